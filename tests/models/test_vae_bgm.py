"""VAE-BGM: TVAE training, a mixture prior fitted to the latent means, sampling from that prior."""
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from hpcsynth.models import VAEBGM

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def bimodal():
    """Two well separated clusters of unequal size: a standard-normal prior blurs them, a mixture should not."""
    n = 1200
    cluster = RNG.random(n) < 0.25
    return pd.DataFrame({"x": np.where(cluster, RNG.normal(6, 0.3, n), RNG.normal(0, 0.3, n)),
                         "c": np.where(cluster, "rare", "common")})


@pytest.fixture(scope="module")
def fitted(bimodal):
    return VAEBGM(epochs=40, batch_size=200, hidden=[64, 64], latent_dim=4, n_components=5, seed=0).fit(bimodal)


def test_prior_is_a_mixture_over_the_latent_means(fitted, bimodal):
    prior = fitted.prior_
    assert prior.means_.shape == (5, 4) and np.isclose(prior.weights_.sum(), 1.0)
    with torch.no_grad():
        means, _ = fitted.encoder_(fitted.to_device(fitted.transformer_.encode(bimodal)))
    assert np.allclose(prior.means_.T @ prior.weights_, means.mean(0).numpy(), atol=0.15)


def test_the_prior_matches_the_aggregate_posterior_the_decoder_was_trained_on(fitted, bimodal):
    """Per dimension, the draws' variance is the means' plus the mean posterior variance (the means alone would
    give the encoder's unused dimensions a variance near 0, where the decoder saw the standard normal)."""
    with torch.no_grad():
        means, logvar = fitted.encoder_(fitted.to_device(fitted.transformer_.encode(bimodal)))
    posterior = logvar.double().exp().mean(0).numpy()
    assert np.allclose(fitted.posterior_var_, posterior)
    draws = fitted._latent(20000, torch.Generator().manual_seed(0)).double().numpy()
    expected = means.double().var(0).numpy() + posterior
    assert np.allclose(draws.var(0), expected, rtol=0.1, atol=0.02)
    assert posterior.max() > 0.5  # an unused dimension: without the posterior variance its draws would be ~0


def test_samples_keep_columns_labels_and_the_rare_cluster(fitted, bimodal):
    sample = fitted.sample(3000)
    assert list(sample.columns) == ["x", "c"] and set(sample["c"]) <= {"rare", "common"}
    assert abs(sample["c"].eq("rare").mean() - bimodal["c"].eq("rare").mean()) < 0.08
    assert sample["x"].between(-2, 8).all()


def test_same_seed_same_samples(fitted, bimodal):
    again = VAEBGM(epochs=40, batch_size=200, hidden=[64, 64], latent_dim=4, n_components=5, seed=0).fit(bimodal)
    pd.testing.assert_frame_equal(fitted.sample(200), again.sample(200))


@pytest.mark.mpi
@pytest.mark.slow
def test_vae_bgm_runs_federated_with_one_shared_prior(mpirun, write_job, tmp_path):
    job = write_job({"model.name": "vae_bgm", "model.n_components": 4,
                     "federation.strategy": ["isolated", "fedavg"]})
    result = mpirun(3, [sys.executable, "-m", "hpcsynth.cli", "run", str(job)])
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "run-fedavg.h5") as f:
        assert f.attrs["status"] == "complete" and f["evaluation"].attrs["quality"] > 0.3
