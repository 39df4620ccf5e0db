"""CTGAN: the estimator contract, the vectorised training-by-sampling pieces against their definitions,
conditional sampling, reproducibility, the flat buffer (both networks and the BatchNorm statistics), and
`hpcsynth run` with model.name ctgan under mpiexec for every strategy."""
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
from hpcsynth.models.ctgan import _LevelSampler, _RowIndex

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
            out = model.generator_(torch.cat([noise, cond], dim=1))[:, model.inv_perm_]
        hits.append(float((out[:, start:start + width].argmax(dim=1) == code).float().mean()))
    assert np.mean(hits) > 0.8 and min(hits) > 0.4, hits  # the rarest level (a few rows) lags


def test_shared_parameters_hold_both_networks_and_the_batchnorm_statistics(fitted):
    flat = fitted.shared_parameters()
    expected = sum(p.numel() for m in (fitted.generator_, fitted.critic_) for p in m.parameters())
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
    blob, params = model.local_state(), model.shared_parameters().clone()
    data = model.to_device(model.transformer_.encode(cohort))
    model.local_update(data, 3)
    after = model.shared_parameters().clone()
    with torch.no_grad():
        model.shared_parameters().copy_(params)
    model.load_local_state(blob)
    model.local_update(data, 3)
    assert torch.equal(model.shared_parameters(), after)


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
