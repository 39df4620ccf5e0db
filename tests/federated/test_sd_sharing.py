"""Synthetic-data sharing under real mpiexec: local rounds exchange nothing, then a shared model trains on the
pooled synthetic rows (data-parallel), and every site ends with that one model."""
import sys

import h5py
import numpy as np
import pytest

from hpcsynth.federated.registry import make_strategy


def test_sd_sharing_is_a_registered_strategy_sharing_one_model():
    strategy = make_strategy("sd_sharing")
    assert strategy.name == "sd_sharing" and strategy.shares_model and strategy.phased


@pytest.mark.mpi
@pytest.mark.slow
def test_sd_sharing_runs_two_phases_and_shares_the_final_model(mpirun, write_job, tmp_path):
    job = write_job({"federation.strategy": "sd_sharing"})
    result = mpirun(3, [sys.executable, "-m", "hpcsynth.cli", "run", str(job)])
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "run.h5") as f:
        rounds = f["rounds"][()]
        assert rounds["round"].tolist() == [0, 1, 2, 3]
        assert rounds["bytes_reduced"][:2].tolist() == [0, 0] and np.all(rounds["bytes_reduced"][2:] > 0)
        params = f["checkpoint/params"][()]
        assert params.shape[0] == 1 and np.isfinite(params).all()
        assert f["evaluation"].attrs["quality"] > 0.3


def test_the_site_models_finish_before_they_sample_for_the_shared_phase():
    """VAE-BGM samples from a prior fitted after training (`finish`): the first phase's site models fit theirs
    before generating the rows they share (they used to sample without one and fail)."""
    from hpcsynth.comm import SoloComm
    from hpcsynth.data.mds import simulate_mds
    from hpcsynth.models.vae_bgm import VAEBGM

    frame = simulate_mds(n_patients=120, seed=1).drop(columns=["patient_id", "site"])
    make = lambda: VAEBGM(epochs=1, batch_size=64, hidden=[8], latent_dim=2, n_components=2, seed=0)  # noqa: E731
    local = make()
    transformer = local.make_transformer().fit(frame)
    local.setup(transformer)
    data = local.to_device(transformer.encode(frame))
    shared = make_strategy("sd_sharing").train(local, data, SoloComm(), 1, 1, 64, lambda m, s: (lambda r: None), make)
    assert hasattr(local, "prior_") and shared is not local
    shared.finish(data)
    assert len(shared.sample(30)) == 30


def test_the_shared_model_fits_its_prior_on_the_synthetic_rows_and_a_private_site_model_on_the_real_once():
    """The private site models fit their DP prior once (the planned releases); the shared model, trained on
    synthetic rows only, fits its prior on them too: the real rows handed to `finish` are never read."""
    import torch

    from hpcsynth.comm import SoloComm
    from hpcsynth.data.mds import simulate_mds
    from hpcsynth.data.mixture import FederatedBGM
    from hpcsynth.data.private_mixture import PrivateBGM
    from hpcsynth.federated.privacy import make_dpsgd
    from hpcsynth.models.vae_bgm import VAEBGM

    frame = simulate_mds(n_patients=120, seed=1).drop(columns=["patient_id", "site"])
    make = lambda: VAEBGM(epochs=1, batch_size=64, hidden=[8], latent_dim=2, n_components=2, seed=0,  # noqa: E731
                          compile="off", prior_iterations=2)
    local = make()
    transformer = local.make_transformer().fit(frame)
    local.setup(transformer)
    local.make_private(make_dpsgd(5.0, 1e-5, 1.0, "rdp", 0.5, 2, (0, 0), local.private_releases()))
    data = local.to_device(transformer.encode(frame))
    strategy = make_strategy("sd_sharing")
    shared = strategy.train(local, data, SoloComm(), 1, 1, 64, lambda m, s: (lambda r: None), make)
    assert isinstance(local.prior_, PrivateBGM) and local.prior_noise_.releases == PrivateBGM.releases(2) + 1
    strategy.finish(shared, data, SoloComm())
    means = shared.prior_.means_.copy()
    strategy.finish(shared, torch.full_like(data, float("nan")), SoloComm())
    assert type(shared.prior_) is FederatedBGM and np.isfinite(means).all()
    assert np.array_equal(shared.prior_.means_, means)
