"""Survival-aware synthesis (issue 21, `hpcsynth.models.time_head`): on a simulated cohort with a known hazard
(exponential times, hazard ratio 2 for one binary covariate, independent censoring and an administrative end of
follow-up), the synthetic rows recover the hazard ratio and the Kaplan-Meier curve, and break no survival
constraint, centralized in one process and under `mpiexec -n 3` FedAvg."""
import sys

import numpy as np
import pytest
import yaml

from hpcsynth.models import TVAE, VAEBGM
from survival_support import HAZARD_RATIO, check_survival, hazard_ratio, simulate


@pytest.fixture(scope="module")
def cohort():
    """Seed 4: its own rows estimate a hazard ratio of 2.01, so the check is on the generator, not on how far a
    sample of 1500 happened to fall from 2 (seed 0 estimates 1.81, and good synthetic rows reproduce that)."""
    return simulate(seed=4)


def test_the_simulated_cohort_has_its_hazard_ratio(cohort):
    ratio, low, high = hazard_ratio(cohort)
    assert low <= HAZARD_RATIO <= high and 0.4 < cohort["event"].mean() < 0.8


@pytest.mark.parametrize("family", [TVAE, VAEBGM], ids=["tvae", "vae_bgm"])
def test_centralized_synthesis_recovers_the_hazard_ratio_and_the_survival_curve(family, cohort):
    model = family(epochs=100, batch_size=500, hidden=[64, 64], latent_dim=16, seed=0, categorical=["group"],
                   time="time", event="event", compile="off").fit(cohort)
    assert model.time_head_ is not None
    check_survival(model.sample(6000), cohort)


@pytest.mark.parametrize("family", [TVAE, VAEBGM], ids=["tvae", "vae_bgm"])
def test_without_an_event_the_time_is_an_ordinary_column(family, cohort):
    model = family(epochs=1, batch_size=500, hidden=[16], latent_dim=4, compile="off", time="time").fit(cohort)
    assert model.time_head_ is None and model.survival_layout_ is None
    assert len(model.sample(10)) == 10


def test_a_declared_time_is_quantile_encoded_whatever_numeric_says(cohort):
    # the head's bins are the time's quantiles: under numeric mode_specific the time alone stays in quantile form
    from hpcsynth.data.mode_specific import ModeSpecificTransform
    from hpcsynth.data.transforms import NumericTransform

    model = TVAE(epochs=1, batch_size=500, hidden=[16], latent_dim=4, compile="off", time="time", event="event",
                 numeric="mode_specific").fit(cohort)
    assert model.time_head_ is not None and len(model.sample(10)) == 10
    assert type(model.transformer_.transform_of("time")) is NumericTransform
    assert isinstance(model.transformer_.transform_of("age"), ModeSpecificTransform)


def test_dp_sgd_clips_and_noises_the_time_heads_gradient_with_the_rest(cohort):
    # the head is part of the loss: its per-sample gradients (vmap of the one-row loss) sum to the batch gradient
    import torch

    from hpcsynth.federated.privacy import make_dpsgd

    model = TVAE(epochs=1, batch_size=500, hidden=[16], latent_dim=4, compile="off", time="time", event="event",
                 categorical=["group"]).fit(cohort)
    mechanism = make_dpsgd(1.0, 1e-5, 1.0, "rdp", 0.1, 10, torch.Generator().manual_seed(0))
    model.make_private(mechanism)
    batch = model.to_device(model.transformer_.encode(cohort.iloc[:32]))
    noise = model.loss_noise(32)
    per_sample = mechanism.per_sample_gradients(batch, noise)
    model.flat_.zero_grad()
    (model.loss(batch, noise) * 32).backward()
    torch.testing.assert_close(per_sample.sum(0), model.shared_gradients(), rtol=1e-4, atol=1e-4)
    head = sum(p.numel() for p in model.time_head_.parameters())
    assert per_sample[:, -head:].abs().sum() > 0  # the head's parameters are the last of the flat buffer
    before = model.shared_parameters().clone()
    model.local_update(batch, 2)
    assert not torch.equal(before[-head:], model.shared_parameters()[-head:])


@pytest.mark.mpi
@pytest.mark.slow
def test_fedavg_over_three_sites_recovers_the_hazard_ratio_and_the_survival_curve(mpirun, tmp_path):
    from hpcsynth.io.inspect import load_synthetic

    real = simulate(1900, seed=1)  # 80% train: about 1500 rows over the three sites; its hazard ratio is 2.01
    real["hospital"] = np.random.default_rng(2).integers(0, 3, len(real))
    real.to_csv(tmp_path / "cohort.csv", index=False)
    job = {"seed": 0,
           "data": {"path": str(tmp_path / "cohort.csv"), "site_column": "hospital", "time": "time",
                    "event": "event", "categorical": ["group"], "holdout": 0.2},
           "model": {"name": "tvae", "batch_size": 100, "hidden": [64, 64], "latent_dim": 16},
           "federation": {"strategy": "fedavg", "rounds": 25, "local_epochs": 4},
           "sample": {"n_rows": 2000}, "output": str(tmp_path / "run.h5"), "progress": False}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    result = mpirun(3, [sys.executable, "-m", "hpcsynth.cli", "run", str(tmp_path / "job.yaml")], timeout=600,
                    env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    synthetic = load_synthetic(tmp_path / "run.h5")
    check_survival(synthetic.sample(frac=1.0, random_state=0).reset_index(drop=True), real.drop(columns="hospital"))
