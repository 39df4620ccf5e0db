"""DP-EM for the Bayesian Gaussian mixture: rows clipped to the bound, each block of statistics noised for its
sensitivity from the site's own stream, a fixed number of releases, and with the noise off the fit is the
non-private EM."""
import numpy as np
import pytest

from comm_support import fit_on_sites
from hpcsynth.comm import SoloComm
from hpcsynth.data.mixture import FederatedBGM, mixture_stats, moment_stats
from hpcsynth.data.private_mixture import MixtureNoise, PrivateBGM, clip_rows
from hpcsynth.data.private_stats import StatisticsNoise

RNG = np.random.default_rng(11)
CENTRES = np.array([[-2.0, 0.0], [2.0, 1.0]])
CLUSTERS = np.concatenate([RNG.normal(CENTRES[0], 0.3, (3000, 2)), RNG.normal(CENTRES[1], 0.3, (1000, 2))])


def private(z: float, clip: float = 50.0, n_iter: int = 10, rank: int = 0, k: int = 4) -> PrivateBGM:
    return PrivateBGM(MixtureNoise(z, seed=0, rank=rank), clip=clip, n_iter=n_iter, seed=0, n_components=k)


def test_clipping_bounds_every_row_and_keeps_the_rows_within():
    x = RNG.normal(0.0, 3.0, (500, 4))
    clipped = clip_rows(x, 2.0)
    norms = np.linalg.norm(x, axis=1)
    assert np.linalg.norm(clipped, axis=1).max() <= 2.0 + 1e-12
    assert np.allclose(clipped[norms <= 2.0], x[norms <= 2.0])
    assert np.allclose(clipped[norms > 2.0] / np.linalg.norm(clipped[norms > 2.0], axis=1, keepdims=True),
                       x[norms > 2.0] / norms[norms > 2.0, None])  # scaled, not moved


def test_one_clipped_row_moves_the_statistics_by_at_most_the_stated_sensitivities():
    """Removing any one row changes N_k, S1_k, S2_k (over all k) by L2 norms of at most 1, C and C^2."""
    clip, k, d = 1.5, 3, 4
    x = clip_rows(RNG.normal(0.0, 4.0, (200, d)), clip)
    resp = RNG.dirichlet(np.ones(k), 200)
    full, worst = mixture_stats(x, resp), np.zeros(3)
    for i in range(200):
        change = full - mixture_stats(np.delete(x, i, 0), np.delete(resp, i, 0))
        worst = np.maximum(worst, [np.linalg.norm(b) for b in np.split(change[:-1], [k, k + k * d])])
    assert np.all(worst <= np.array([1.0, clip, clip**2]) * (1 + 1e-9))


def test_each_block_gets_noise_of_z_times_its_sensitivity_and_counts_as_a_release():
    model, m = private(z=3.0, clip=2.0), 100_000
    released = model._noisy_sum(np.zeros(3 * m), [m, m, m], SoloComm())
    stds = [block.std() for block in np.split(released, 3)]
    assert stds == pytest.approx([3.0, 6.0, 12.0], rel=0.01)
    assert model.noise.releases == 3


def test_every_site_draws_its_own_noise_apart_from_the_transform_statistics():
    draws = [MixtureNoise(1.0, seed=0, rank=r).perturb(np.zeros(50)) for r in (0, 1)]
    statistics = StatisticsNoise(1.0, 0.0, 0, seed=0, rank=0).perturb(np.zeros(50))
    again = MixtureNoise(1.0, seed=0, rank=0).perturb(np.zeros(50))
    assert np.array_equal(draws[0], again)
    assert not np.allclose(draws[0], draws[1]) and not np.allclose(draws[0], statistics)


def test_a_fit_makes_exactly_the_planned_releases_and_releases_no_likelihood():
    model = private(z=5.0, n_iter=7).fit(CLUSTERS)
    assert model.noise.releases == PrivateBGM.releases(7) == 27 and model.n_iter_ == 7
    assert np.isnan(model.mean_log_likelihood_)


def test_with_the_noise_off_the_fit_is_the_non_private_em_from_the_same_start():
    dp = private(z=1e-12).fit(CLUSTERS)
    exact = private(z=0.0)
    exact.set_priors(moment_stats(CLUSTERS))
    start = exact._public_start(CLUSTERS)
    plain = FederatedBGM(n_components=4)
    plain.set_priors(moment_stats(CLUSTERS))
    plain.fit_from(CLUSTERS, start, n_iter=10)
    for attribute in ("weights_", "means_", "covariances_"):
        assert np.allclose(getattr(dp, attribute), getattr(plain, attribute), rtol=1e-8, atol=1e-10), attribute


def cluster_mass(model: FederatedBGM) -> np.ndarray:
    """The mixture weight whose components lie at each true centre."""
    nearest = np.argmin(((model.means_[:, None] - CENTRES[None]) ** 2).sum(2), axis=1)
    return np.bincount(nearest, weights=model.weights_, minlength=len(CENTRES))


def test_with_the_noise_off_the_fit_finds_the_clusters_of_the_non_private_fit():
    dp, plain = private(z=1e-12).fit(CLUSTERS), FederatedBGM(n_components=4).fit(CLUSTERS)
    assert cluster_mass(dp) == pytest.approx(cluster_mass(plain), abs=0.01)
    assert cluster_mass(dp) == pytest.approx([0.75, 0.25], abs=0.01)


def test_a_noisy_fit_stays_inside_the_clipping_ball_with_valid_covariances():
    dp = private(z=50.0, clip=3.0).fit(CLUSTERS)
    assert np.all(np.linalg.norm(dp.means_, axis=1) <= 3.0 + 1e-9)
    assert np.all(dp.covariances_ > 0) and np.isclose(dp.weights_.sum(), 1.0)


def test_three_sites_end_with_one_mixture_from_their_noisy_sums():
    parts = np.array_split(RNG.permutation(CLUSTERS), 3)
    models = fit_on_sites([private(z=2.0, clip=3.0, rank=k) for k in range(3)], parts)
    assert all(np.array_equal(m.means_, models[0].means_) for m in models)
    assert all(m.noise.releases == PrivateBGM.releases(10) for m in models)
    assert cluster_mass(models[0]) == pytest.approx([0.75, 0.25], abs=0.03)
