"""DP-VAE-BGM: TVAE's DP-SGD for training, DP-EM for the prior and one noisy release of the posterior variances,
all in one accountant; the prior is fitted from the rows once, as planned; a private run reports the epsilon of
Opacus's accountant on its whole history."""
import sys

import h5py
import numpy as np
import pytest

from hpcsynth.data.accounting import RDP_ORDERS
from hpcsynth.data.mds import simulate_mds
from hpcsynth.data.private_mixture import PrivateBGM
from hpcsynth.federated.privacy import make_dpsgd
from hpcsynth.io.inspect import describe
from hpcsynth.io.runfile import read_table
from hpcsynth.models import VAEBGM


@pytest.fixture(scope="module")
def frame():
    return simulate_mds(n_patients=200, seed=3).drop(columns=["patient_id", "site"])


def private_model(frame, **options):
    """A private VAE-BGM on `frame`, after four DP-SGD steps; its encoded rows."""
    model = VAEBGM(batch_size=50, hidden=[16], latent_dim=3, n_components=3, seed=0, compile="off", **options)
    transformer = model.make_transformer().fit(frame)
    model.setup(transformer)
    data = model.to_device(transformer.encode(frame))
    model.make_private(make_dpsgd(4.0, 1e-5, 1.0, "rdp", 0.25, 4, (0, 0), model.private_releases()))
    model.local_update(data, 4)
    return model, data


def test_the_planned_releases_are_one_dp_em_fit_of_the_prior_and_the_posterior_variances():
    model = VAEBGM(prior_noise_multiplier=30.0, prior_iterations=4)
    assert model.dp_sgd and model.supports_privacy and model.private_finish
    assert model.private_releases() == [(30.0, 1.0, PrivateBGM.releases(4) + 1)] == [(30.0, 1.0, 19)]


def test_a_private_fit_spends_the_planned_releases_and_samples_the_columns(frame):
    model, data = private_model(frame, prior_iterations=3)
    model.finish(data)
    assert isinstance(model.prior_, PrivateBGM) and model.prior_noise_.releases == PrivateBGM.releases(3) + 1
    assert model.privacy_.accountant.accountant.history[0] == model.private_releases()[0]
    assert model.posterior_var_.shape == (3,) and np.all((model.posterior_var_ >= 0) & (model.posterior_var_ <= 1))
    sample = model.sample(300)
    assert list(sample.columns) == list(frame.columns) and len(sample) == 300
    assert set(sample["sex"].dropna()) <= set(frame["sex"].dropna())


def test_a_second_private_fit_of_the_prior_is_refused_and_releases_nothing(frame):
    model, data = private_model(frame, prior_iterations=2)
    model.finish(data)
    prior = model.prior_
    with pytest.raises(RuntimeError, match="fitted already"):
        model.finish(data)
    assert model.prior_ is prior and model.prior_noise_.releases == PrivateBGM.releases(2) + 1


@pytest.mark.mpi
@pytest.mark.slow
def test_private_vae_bgm_reports_the_epsilon_of_opacus_accountant_on_its_history(mpirun, write_job, tmp_path,
                                                                                 frame):
    z, iterations, rounds = 15.0, 3, 2
    job = write_job({"model": {"name": "vae_bgm", "batch_size": 100, "hidden": [16], "latent_dim": 4,
                               "n_components": 3, "prior_noise_multiplier": z, "prior_iterations": iterations},
                     "privacy": {"epsilon": 6.0, "delta": 1e-5, "statistics_share": 0.25},
                     "data.bounds": {"age": [18, 100]}, "data.n_patients": 900, "federation.rounds": rounds})
    result = mpirun(3, [sys.executable, "-m", "hpcsynth.cli", "run", str(job)])
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "run.h5") as f:
        privacy = f["privacy"].attrs
        statistics = (float(privacy["statistics_noise_multiplier"]), 1.0, int(privacy["statistics_releases"]))
        prior = (z, 1.0, 3 * (iterations + 2) + 1)
        assert list(privacy["model_release_noise_multiplier"]) == [z]
        assert list(privacy["model_releases"]) == [prior[2]]
        spent = np.asarray(privacy["epsilon_spent"])
        for sigma, rate, eps in zip(privacy["noise_multiplier"], privacy["sample_rate"], spent):
            n_rows = round(100 / rate)  # the site's rows: its batch over the sample rate
            steps = (float(sigma), float(rate), rounds * -(-n_rows // 100))  # rounds x batches per local epoch
            assert eps == pytest.approx(opacus_epsilon([statistics, prior, steps], privacy), rel=1e-9)
            assert eps > opacus_epsilon([statistics, steps], privacy) + 0.02  # the prior's share is in it
        assert np.all(spent <= 6.0) and np.all(spent > 5.9)
        pooled, site = read_table(f["synthetic/pooled"]), read_table(f["synthetic/site_0"])
    shown = f"the model's own releases (outside DP-SGD): {3 * (iterations + 2) + 1} Gaussian, noise multiplier 15"
    assert shown in describe(tmp_path / "run.h5")  # hpcsynth inspect
    assert list(pooled.columns) == list(site.columns) == list(frame.columns)
    assert len(pooled) > len(site) > 0 and set(pooled["sex"].dropna()) <= set(frame["sex"])


def opacus_epsilon(history: list[tuple[float, float, int]], privacy) -> float:
    """Epsilon of Opacus's RDP accountant on `history`, over the project's RDP orders, at the run's delta."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = history
    return accountant.get_epsilon(delta=float(privacy["accountant_delta"]), alphas=RDP_ORDERS)
