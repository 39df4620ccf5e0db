"""CTGAN: the estimator contract, the vectorised training-by-sampling pieces against their definitions,
conditional sampling, reproducibility, the flat buffer (both networks, the survival head of the MDS cohort's time
and event, and the BatchNorm statistics), and `hpcsynth run` with model.name ctgan under mpiexec for every
strategy."""
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from hpcsynth.data.mds import MDS_METADATA, simulate_mds
from hpcsynth.data.mode_specific import ModeSpecificTransform
from hpcsynth.models import CTGAN
from hpcsynth.models.conditions import balanced_sample
from hpcsynth.models.ctgan import _Critic, _LevelSampler, _RowIndex
from model_support import assert_local_state_resumes

SMALL = dict(batch_size=100, embedding_dim=16, generator_dim=[32, 32], discriminator_dim=[32, 32], seed=1,
             categorical=MDS_METADATA["categorical"], time="os_months", event="os_event")


@pytest.fixture(scope="module")
def cohort():
    return simulate_mds(n_patients=600, seed=3).drop(columns=["patient_id", "site"])


@pytest.fixture(scope="module")
def fitted(cohort):
    return CTGAN(epochs=4, **SMALL).fit(cohort)


def test_constructor_only_stores_parameters():
    model = CTGAN(epochs=3, pac=5)
    assert model.epochs == 3 and model.pac == 5
    assert not [k for k in vars(model) if k.endswith("_")]


def test_level_sampler_draws_columns_uniformly_and_levels_by_weight():
    # column 0 has levels with weights 1, 0, 3; column 1 has 2, 2 (flat levels 0..4)
    weights = torch.tensor([1.0, 0.0, 3.0, 2.0, 2.0])
    sampler = _LevelSampler(weights, torch.tensor([0, 0, 0, 1, 1]), 2)
    draws = sampler.sample(200_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).double() / draws.numel()
    expected = torch.tensor([0.125, 0.0, 0.375, 0.25, 0.25], dtype=torch.float64)
    assert torch.allclose(freq, expected, atol=0.005), freq
    assert freq[1] == 0  # a level without weight is never drawn


def test_row_index_returns_rows_with_the_requested_levels():
    codes = torch.tensor([[0, 3], [2, 4], [0, 4], [2, 3], [0, 3]])  # flat levels of two columns
    index = _RowIndex(codes, 5)
    levels = torch.tensor([0, 2, 3, 4] * 500)
    rows = index.sample(levels)
    column = (levels >= 3).long()
    assert torch.equal(codes[rows, column], levels)
    assert set(rows[levels == 0].tolist()) == {0, 2, 4}  # every matching row is reachable


def test_numeric_columns_use_mode_specific_normalisation_by_default(fitted):
    assert isinstance(fitted.transformer_.transform_of("age"), ModeSpecificTransform)
    assert CTGAN(numeric="quantile").make_transformer().numeric == "quantile"


def test_samples_have_the_columns_kinds_and_labels_of_the_data(fitted, cohort):
    sample = fitted.sample(400)
    assert list(sample.columns) == list(cohort.columns) and len(sample) == 400
    assert set(sample["cyto_risk"].dropna()) <= set(cohort["cyto_risk"].dropna())
    assert set(sample["os_event"].dropna()) <= {0.0, 1.0}
    for column in ("age", "hb", "plt", "os_months"):
        assert sample[column].min() >= cohort[column].min() and sample[column].max() <= cohort[column].max()


def test_same_seed_same_samples_and_different_seed_differs(cohort, fitted):
    again = CTGAN(epochs=4, **SMALL).fit(cohort)
    pd.testing.assert_frame_equal(fitted.sample(200), again.sample(200))
    assert fitted.losses_ == again.losses_
    assert not fitted.sample(200).equals(fitted.sample(200, seed=5))


def test_conditions_fix_the_level_and_reject_what_cannot_be_conditioned(fitted, cohort):
    rare = cohort["cyto_risk"].value_counts().index[-1]
    sample = fitted.sample(300, conditions={"cyto_risk": rare, "sex": "F"})
    assert (sample["cyto_risk"] == rare).all() and (sample["sex"] == "F").all()
    with pytest.raises(ValueError, match="no level"):
        fitted.sample(10, conditions={"sex": "X"})
    with pytest.raises(ValueError, match="numeric"):
        fitted.sample(10, conditions={"age": 70})


def test_balanced_sampling_upsamples_rare_levels(fitted):
    sample = balanced_sample(fitted, 500, "cyto_risk")
    counts = sample["cyto_risk"].value_counts()
    assert len(counts) == len(fitted.transformer_.transform_of("cyto_risk").labels_)
    assert counts.max() - counts.min() <= 1


def test_the_generator_learns_to_follow_the_conditional_vector(cohort):
    model = CTGAN(epochs=30, generator_lr=2e-3, discriminator_lr=2e-3, **SMALL).fit(cohort)
    transform = model.transformer_.transform_of("cyto_risk")
    block = model.block_of_column_[model.transformer_.columns.index("cyto_risk")]
    start, width = int(model.block_start_[block]), int(model.block_width_[block])
    hits = []
    for code in range(len(transform.labels_)):
        level = int(model.level_offset_[block]) + code
        noise = torch.randn((200, model.embedding_dim), generator=torch.Generator().manual_seed(code))
        cond = torch.zeros((200, model.level_column_.numel()))
        cond[:, level] = 1.0
        with torch.no_grad():
            model.generator_.eval()
            out = model._to_transform(model.generator_(torch.cat([noise, cond], dim=1)))
        hits.append(float((out[:, start:start + width].argmax(dim=1) == code).float().mean()))
    assert np.mean(hits) > 0.8 and min(hits) > 0.4, hits  # the rarest level (a few rows) lags


def test_shared_parameters_hold_both_networks_the_survival_head_and_the_batchnorm_statistics(fitted):
    flat = fitted.shared_parameters()
    expected = sum(p.numel() for m in (fitted.generator_, fitted.critic_, fitted.time_head_) for p in m.parameters())
    assert flat.numel() == expected
    bn = fitted.generator_[0].bn
    assert bn.running_var.data_ptr() >= flat.data_ptr()  # a view of the buffer: FedAvg averages it
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))  # it tracked the batches
    before, saved = fitted.sample(50), flat.clone()
    with torch.no_grad():
        bn.running_var.mul_(4.0)
    assert not fitted.sample(50).equals(before)
    with torch.no_grad():
        flat.copy_(saved)
    pd.testing.assert_frame_equal(fitted.sample(50), before)


def test_local_state_restores_both_optimisers(cohort):
    model = CTGAN(epochs=1, **SMALL).fit(cohort)
    assert_local_state_resumes(model, model.to_device(model.transformer_.encode(cohort)), 3)


@pytest.mark.mpi
def test_hpcsynth_run_trains_ctgan_under_every_strategy(mpirun, write_job, tmp_path):
    job = write_job({"model": {"name": "ctgan", "batch_size": 60, "embedding_dim": 8, "generator_dim": [16],
                               "discriminator_dim": [16], "pac": 5},
                     "data.n_patients": 300,
                     "federation": {"strategy": ["centralized", "isolated", "fedavg"], "rounds": 2,
                                    "local_epochs": 1}})
    result = mpirun(3, [sys.executable, "-m", "hpcsynth.cli", "run", str(job)], timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    for strategy in ("centralized", "isolated", "fedavg"):
        with h5py.File(tmp_path / f"run-{strategy}.h5", "r") as f:
            assert f["rounds"].shape[0] == 2
            assert len(f["synthetic/pooled"]["age"]) > 0


def test_the_gradient_penalty_gradient_is_autograds_double_backward():
    # the critic writes out the input gradient of its scores; the penalty built on it must have the value and
    # the parameter gradients of the penalty on autograd's input gradient (double backward), dropout included
    torch.manual_seed(0)
    packs = 6
    for hidden, cond_width in (([16, 8], 5), ([8], 0)):
        critic = _Critic(12, cond_width, hidden)
        data, cond = torch.randn(3 * packs, 12), torch.randn(packs, cond_width)
        keep = critic.keep_masks(3 * packs, torch.device("cpu"))
        scores, (by_data, by_cond) = critic.scores(data, cond, tail=packs, keep=keep)
        penalty = ((torch.cat([by_data, by_cond], 1).norm(dim=1) - 1) ** 2).mean() + scores.mean()
        # the reference: one Linear over each pack's [data, conditional vector], LeakyReLU, dropout factors
        full = torch.cat([data, cond.repeat(3, 1)], 1).requires_grad_(True)
        h = torch.nn.functional.linear(full, torch.cat([critic.weight_data, critic.weight_cond], 1), critic.bias)
        for mask, layer in zip(keep, critic.rest):
            h = layer(torch.nn.functional.leaky_relu(h, 0.2) * mask)
        gradient = torch.autograd.grad(h[-packs:].sum(), full, create_graph=True)[0][-packs:]
        reference = ((gradient.norm(dim=1) - 1) ** 2).mean() + h.mean()
        assert torch.allclose(scores, h, atol=1e-6)
        assert torch.allclose(torch.cat([by_data, by_cond], 1), gradient, atol=1e-6)
        params = [p for p in critic.parameters() if p.numel()]
        for ours, theirs in zip(torch.autograd.grad(penalty, params), torch.autograd.grad(reference, params)):
            assert torch.allclose(ours, theirs, atol=1e-6)


def test_compile_auto_leaves_short_runs_eager_and_rejects_unknown_values(cohort, fitted):
    assert fitted.compile == "auto" and fitted.compile_s_ == 0.0
    assert not any(f.compiled for f in fitted._compiled.values())
    with pytest.raises(ValueError, match="compile"):
        CTGAN(epochs=1, compile="sometimes", **SMALL).fit(cohort)


def test_a_compiled_step_computes_the_eager_step_and_training_stays_reproducible(cohort):
    # one compiled model (its two steps compile once, in fit): resumed from the same state it trains to the same
    # parameters; and the same inputs through its steps (one graph each, forward and backward) and through the
    # eager steps (autograd) give the same loss, gradient and BatchNorm statistics
    compiled = CTGAN(epochs=1, compile="on", precision="fp32", **SMALL).fit(cohort)
    assert all(f.compiled for f in compiled._compiled.values()) and compiled.compile_s_ > 0
    data = compiled.to_device(compiled.transformer_.encode(cohort))
    assert_local_state_resumes(compiled, data, 2)

    eager = CTGAN(epochs=1, compile="off", precision="fp32", **SMALL)
    eager.setup(compiled.transformer_)
    with torch.no_grad():
        eager.shared_parameters().copy_(compiled.shared_parameters())
    size, packs = 100, 10
    cond, noise = torch.zeros((size, eager.level_column_.numel())), torch.empty((size, eager.embedding_dim))
    eager._row_index(data)
    torch.manual_seed(5)
    levels = eager._draw(size, cond, noise)
    rows = eager._rows_index.sample(levels)
    keep_critic, keep_generator = eager.critic_.keep_masks(3 * packs, "cpu"), eager.critic_.keep_masks(packs, "cpu")
    steps = (("critic", "_critic_loss", (noise, cond, None, rows, keep_critic)),
             ("generator", "_generator_loss", (noise, cond, levels, keep_generator)))
    for model in (eager, compiled):
        for m in model.modules_:
            m.train()
    for key, loss, inputs in steps:
        results = []
        for model in (eager, compiled):
            args = tuple(model._data if x is None else x for x in inputs)
            modules = model._critic_modules() if key == "critic" else [model.generator_]  # critic: and the head
            function = model._gradient_function(key, getattr(model, loss), modules)
            torch.manual_seed(7)  # the Gumbel noise and the interpolation weights
            results.append((float(function(*args)), model.shared_gradients().clone(),
                            model.shared_parameters().clone()))
            for p in model.critic_.parameters():
                p.requires_grad_(key != "critic")
        (loss_e, grad_e, params_e), (loss_c, grad_c, params_c) = results
        region = slice(eager._generator_size, None) if key == "critic" else slice(None, eager._generator_size)
        assert loss_c == pytest.approx(loss_e, rel=1e-5)
        assert torch.allclose(grad_c[region], grad_e[region], atol=1e-5, rtol=1e-4)
        assert torch.allclose(params_c, params_e, atol=1e-6)  # BatchNorm's running statistics moved alike
