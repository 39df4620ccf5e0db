"""TabDDPM: the schedule, posteriors and DDIM step against closed forms, samples, reproducibility, the few-step
sampler against the ancestral one, conditional sampling, and the three strategies end to end under mpiexec
(FedAvg through the unchanged protocol)."""
import math
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from hpcsynth.data.mds import MDS_METADATA, simulate_mds
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.models import TabDDPM
from hpcsynth.models.conditions import balanced_sample
from hpcsynth.models.ddpm import _log_posterior, _posterior, cosine_alpha_bar, timestep_embedding

SMALL = dict(hidden=[64, 64], time_dim=32, diffusion_steps=100)


@pytest.fixture(scope="module")
def cohort():
    return simulate_mds(n_patients=600, seed=3).drop(columns=["patient_id", "site"])


@pytest.fixture(scope="module")
def fitted(cohort):
    model = TabDDPM(epochs=20, batch_size=200, seed=1, sample_steps=40, categorical=MDS_METADATA["categorical"],
                    time="os_months", event="os_event", **SMALL)
    return model.fit(cohort)


@pytest.fixture(scope="module")
def clusters():
    """y picks a cluster of x: x | y=a ~ N(2, 0.7), x | y=b ~ N(-2, 0.7)."""
    rng = np.random.default_rng(0)
    y = rng.choice(["a", "b"], 1000, p=[0.3, 0.7])
    return pd.DataFrame({"x": rng.normal(np.where(y == "a", 2.0, -2.0), 0.7), "y": y})


# -- closed forms ---------------------------------------------------------------------------------------------
def test_cosine_schedule_matches_nichol_and_dhariwal():
    abar = cosine_alpha_bar(1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert abar[0] == pytest.approx(f(1) / f(0), rel=1e-12)
    assert abar[499] == pytest.approx(f(500) / f(0), rel=1e-9)
    assert np.all(np.diff(abar) < 0) and abar[-1] < 1e-6
    assert (1 - abar[-1] / abar[-2]) == pytest.approx(0.999)  # the last beta is capped


def test_timestep_embedding_is_cos_then_sin_of_geometric_frequencies():
    emb = timestep_embedding(torch.tensor([0, 7]), 8)
    assert torch.equal(emb[0], torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]))
    freqs = torch.exp(-math.log(10000.0) * torch.arange(4) / 4)
    assert torch.allclose(emb[1], torch.cat([torch.cos(7 * freqs), torch.sin(7 * freqs)]))


def test_multinomial_posterior_matches_bayes_rule():
    k, alpha, abar_prev = 3, torch.tensor(0.9), torch.tensor(0.6)
    x_t, x0 = torch.tensor([0.0, 1, 0]), torch.tensor([1.0, 0, 0])
    # q(x_prev | x0) = abar_prev x0 + (1 - abar_prev) / k; q(x_t | x_prev) = alpha [x_prev == x_t] + (1 - alpha) / k
    prior = abar_prev * x0 + (1 - abar_prev) / k
    likelihood = alpha * x_t + (1 - alpha) / k
    assert torch.allclose(_posterior(x_t, x0, alpha, abar_prev), prior * likelihood / (prior * likelihood).sum())
    assert torch.equal(_posterior(x_t, x0, alpha, torch.tensor(1.0)), x0)  # at t = 0 the posterior is x0


def test_log_posterior_is_the_log_of_the_posterior_without_underflow():
    x_t = torch.tensor([[0.0, 1, 0], [1.0, 0, 0]])
    logits = torch.tensor([[2.0, -1, 0.5], [0.0, -200, 3]])  # -200: a probability that underflows float32
    for alpha, abar_prev in ((0.9, 0.6), (0.999, 1.0)):
        alpha, abar_prev = torch.tensor(alpha), torch.tensor(abar_prev)
        log_q = _log_posterior(x_t, torch.log_softmax(logits, -1), alpha, abar_prev)
        assert torch.allclose(log_q.exp(), _posterior(x_t, torch.softmax(logits, -1), alpha, abar_prev), atol=1e-6)
    assert torch.isfinite(log_q).all() and log_q[1, 1] < -150  # at t = 0, in log space: finite, with a gradient


@pytest.mark.parametrize("step", [0, 7])
def test_the_categorical_loss_is_the_bound_estimate_steps_times_the_kl(step):
    """L_t / p(t) with t uniform over T steps (TabDDPM's `kl / pt`): T times the posterior KL (at t = 0 the
    negative log-likelihood of x_0), averaged over rows and categorical columns."""
    frame = pd.DataFrame({"c": list("abcab") * 8, "d": list("xyyxy") * 8})
    transformer = TableTransformer().fit(frame)
    model = TabDDPM(hidden=[8], time_dim=8, diffusion_steps=50, seed=0).setup(transformer)
    batch = model.to_device(transformer.encode(frame))
    n = batch.shape[0]
    draws = torch.cat([torch.full((n, 1), float(step)), torch.zeros((n, 2))], dim=1)  # uniforms 0: x_t = level 0
    x_t = torch.zeros_like(batch)
    x_t[:, [0, 3]] = 1.0
    with torch.no_grad():
        loss = model.loss(batch, draws)
        out = model.denoiser_(x_t, torch.full((n,), step))
    abar = torch.tensor(np.concatenate([[1.0], cosine_alpha_bar(50)]), dtype=torch.float32)
    alpha, abar_prev = abar[step + 1] / abar[step], abar[step]
    kl, nll = 0.0, 0.0
    for block in (slice(0, 3), slice(3, 5)):
        true = _posterior(x_t[:, block], batch[:, block], alpha, abar_prev)
        pred = _posterior(x_t[:, block], torch.softmax(out[:, block], -1), alpha, abar_prev)
        kl += (torch.xlogy(true, true) - true * torch.log(pred)).sum(-1).mean() / 2
        nll += -(batch[:, block] * torch.log(pred)).sum(-1).mean() / 2
    if step == 0:
        assert float(kl) == pytest.approx(float(nll), rel=1e-5)
    assert float(loss) == pytest.approx(50 * float(kl), rel=1e-4)


def test_respaced_steps_run_from_the_last_training_step_to_zero():
    model = TabDDPM(diffusion_steps=1000, sample_steps=50)
    steps = model._timesteps()
    assert len(steps) == 50 and steps[0] == 0 and steps[-1] == 999
    assert TabDDPM(diffusion_steps=100, sample_steps=None)._timesteps() == list(range(100))
    assert len(TabDDPM()._timesteps()) == 50  # few steps by default


def test_a_ddim_step_with_the_true_noise_keeps_that_noise_and_ends_at_x0():
    """DDIM (eta = 0): from x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) e with e predicted exactly, the step to s is
    sqrt(abar_s) x0 + sqrt(1 - abar_s) e, no draw involved; the step to abar_s = 1 is x0 itself."""
    model = TabDDPM(sampler="ddim")
    abar = torch.tensor(cosine_alpha_bar(1000), dtype=torch.float64)
    x0, e = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64), torch.tensor([1.0, -0.5, 0.1], dtype=torch.float64)
    x_t = abar[700].sqrt() * x0 + (1 - abar[700]).sqrt() * e
    step = model._numeric_step(x_t, e, abar[700], abar[300], torch.Generator().manual_seed(0))
    assert torch.allclose(step, abar[300].sqrt() * x0 + (1 - abar[300]).sqrt() * e, atol=1e-10)
    assert torch.allclose(model._numeric_step(x_t, e, abar[700], torch.tensor(1.0, dtype=torch.float64), None), x0)


def test_an_unknown_sampler_is_refused_with_its_name(clusters):
    with pytest.raises(ValueError, match="sampler: expected ddim or ancestral, got 'euler'"):
        TabDDPM(epochs=1, sampler="euler", **SMALL).fit(clusters)


# -- the fitted model -----------------------------------------------------------------------------------------
def test_constructor_only_stores_parameters():
    model = TabDDPM(epochs=3, diffusion_steps=10)
    assert model.epochs == 3 and model.hidden == (256, 256) and not [k for k in vars(model) if k.endswith("_")]


@pytest.mark.parametrize("sampler", ["ddim", "ancestral"])
def test_samples_have_the_columns_kinds_and_labels_of_the_data(fitted, cohort, sampler, monkeypatch):
    monkeypatch.setattr(fitted, "sampler", sampler)
    sample = fitted.sample(400)
    assert list(sample.columns) == list(cohort.columns) and len(sample) == 400
    assert set(sample["sex"].dropna()) <= set(cohort["sex"].dropna())
    assert set(sample["cyto_risk"].dropna()) <= set(cohort["cyto_risk"].dropna())
    assert set(sample["SF3B1"].dropna()) <= {0.0, 1.0} and set(sample["os_event"].dropna()) <= {0.0, 1.0}
    for column in ("age", "hb", "plt", "os_months"):
        assert cohort[column].min() <= sample[column].min() and sample[column].max() <= cohort[column].max()


def test_training_reduces_the_denoising_loss_and_the_survival_heads(fitted, cohort):
    """Against the same model untrained (the same seed: the same initial weights), on the same rows and draws:
    the denoising loss of the covariates falls by more than a fifth (measured: 1.99 to 1.31) and the survival
    head's cross-entropy per row falls too (4.60 to 4.22; its floor is the outcome's entropy given the
    covariates, which is why the training loss as a whole falls by less than a fifth)."""
    untrained = TabDDPM(**fitted.get_params()).setup(fitted.transformer_)
    rows = fitted.to_device(fitted.transformer_.encode(cohort))[:, fitted.order_]
    draws = untrained.loss_noise(len(rows))
    with torch.no_grad():
        denoising = [float(m._denoising_loss(rows[:, :len(m.columns_)], draws)) for m in (fitted, untrained)]
        head = [float(m.time_head_.loss(rows)) / len(rows) for m in (fitted, untrained)]
    assert denoising[0] < 0.8 * denoising[1] and head[0] < head[1] - 0.2


def test_same_seed_same_samples_and_different_seed_differs(cohort, fitted):
    again = TabDDPM(epochs=20, batch_size=200, seed=1, sample_steps=40, categorical=MDS_METADATA["categorical"],
                    time="os_months", event="os_event", **SMALL).fit(cohort)
    pd.testing.assert_frame_equal(fitted.sample(200), again.sample(200))
    assert not fitted.sample(200).equals(fitted.sample(200, seed=99))


def test_the_few_step_ddim_sampler_is_a_function_of_the_seed(fitted):
    default, fitted.sampler = fitted.sampler, "ddim"
    try:
        first = fitted.sample(300, seed=5)
        pd.testing.assert_frame_equal(first, fitted.sample(300, seed=5))
        assert not first.equals(fitted.sample(300, seed=6))
    finally:
        fitted.sampler = default


def test_ddim_over_every_training_step_matches_the_ancestral_marginals():
    """Run over all the chain's steps, the deterministic sampler and the ancestral one sample one trained model's
    marginals: each numeric column within a Kolmogorov-Smirnov distance of 0.15 (measured: 0.10 for a two-cluster
    column, 0.06 for a gamma one; 0.16 and more for an undertrained model), the categorical column within a total
    variation distance of 0.05, on 1,500 rows each."""
    rng = np.random.default_rng(0)
    y = rng.choice(["a", "b"], 1000, p=[0.3, 0.7])
    frame = pd.DataFrame({"x": rng.normal(np.where(y == "a", 2.0, -2.0), 0.7), "z": rng.gamma(2.0, 1.0, 1000), "y": y})
    model = TabDDPM(epochs=400, batch_size=250, seed=0, sample_steps=None, sampler="ddim", **SMALL).fit(frame)
    ddim = model.sample(1500, seed=11)
    model.sampler = "ancestral"
    ancestral = model.sample(1500, seed=12)
    for column in ("x", "z"):
        a, b = np.sort(ddim[column].to_numpy()), np.sort(ancestral[column].to_numpy())
        grid = np.concatenate([a, b])
        ks = np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)).max()
        assert ks < 0.15, (column, ks)
    p, q = ddim["y"].value_counts(normalize=True), ancestral["y"].value_counts(normalize=True)
    assert 0.5 * p.sub(q, fill_value=0).abs().sum() < 0.05


def test_shared_parameters_are_the_denoisers_and_the_survival_heads(fitted):
    flat = fitted.shared_parameters()
    modules = (fitted.denoiser_, fitted.time_head_)
    assert flat.numel() == sum(p.numel() for m in modules for p in m.parameters())
    before = fitted.sample(50)
    saved = flat.clone()
    with torch.no_grad():
        flat.mul_(0.5)
    assert not fitted.sample(50).equals(before)
    with torch.no_grad():
        flat.copy_(saved)
    pd.testing.assert_frame_equal(fitted.sample(50), before)


def test_conditional_samples_hold_the_condition_and_move_the_other_columns(clusters):
    model = TabDDPM(epochs=40, batch_size=250, seed=0, sample_steps=50, **SMALL).fit(clusters)
    given_a = model.sample(600, conditions={"y": "a"})
    given_b = model.sample(600, conditions={"y": "b"})
    assert (given_a["y"] == "a").all() and (given_b["y"] == "b").all()
    assert given_a["x"].mean() > 0.5 and given_b["x"].mean() < -0.5
    upsampled = balanced_sample(model, 400, "y")
    assert upsampled["y"].value_counts().to_dict() == {"a": 200, "b": 200}
    with pytest.raises(ValueError, match="numeric"):
        model.sample(5, conditions={"x": 1.0})


def test_perfectly_correlated_categories_are_drawn_together():
    """Two copies of one categorical column next to a numeric one: the reverse process draws every block on its
    own at each step, so the pair stays equal only if the denoiser learned their dependence (with the bound's
    L_t unweighted, the noise error swamped the categorical term and ~40% of the pairs matched, near chance)."""
    rng = np.random.default_rng(0)
    level = rng.choice(["p", "q", "r"], 600)
    frame = pd.DataFrame({"a": level, "b": level, "x": rng.normal(size=600)})
    model = TabDDPM(epochs=200, batch_size=200, seed=0, sample_steps=50, **SMALL).fit(frame)
    sample = model.sample(1000)
    assert (sample["a"] == sample["b"]).mean() > 0.95
    assert sample["a"].value_counts(normalize=True).min() > 0.2  # not one level for every row


# -- the job, end to end --------------------------------------------------------------------------------------
@pytest.mark.mpi
def test_the_job_runs_every_strategy_on_three_ranks(mpirun, write_job, tmp_path):
    model = {"name": "ddpm", "batch_size": 100, "hidden": [32, 32], "diffusion_steps": 50, "time_dim": 16}
    job = write_job({"model": model, "federation.strategy": ["centralized", "isolated", "fedavg"]})
    result = mpirun(3, [sys.executable, "-m", "hpcsynth.cli", "run", str(job)], timeout=200)
    assert result.returncode == 0, result.stdout + result.stderr
    for strategy in ("centralized", "isolated", "fedavg"):
        with h5py.File(tmp_path / f"run-{strategy}.h5") as f:
            assert f.attrs["status"] == "complete" and len(f["synthetic/pooled"].attrs["columns"]) > 20
            assert len(f["rounds"]) == 2 and np.isfinite(f["rounds"]["loss"]).all()
