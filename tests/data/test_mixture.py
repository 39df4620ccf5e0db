"""Federated EM: the updates are scikit-learn's, and three sites summing statistics equal the pooled fit."""
import numpy as np
import pytest
from sklearn.mixture import BayesianGaussianMixture

from comm_support import fit_on_sites
from hpcsynth.data.mixture import FederatedBGM, moment_stats

RNG = np.random.default_rng(7)
DATA = np.concatenate([RNG.normal(-5, 1, 1200), RNG.normal(2, 0.5, 600), RNG.normal(8, 2, 200)])


def fit_on(parts: list[np.ndarray], **options) -> list[FederatedBGM]:
    return fit_on_sites([FederatedBGM(**options) for _ in parts], parts)


def test_updates_equal_scikit_learns_from_the_same_responsibilities():
    x = DATA[:, None]
    resp = np.eye(6)[np.random.default_rng(1).integers(0, 6, len(x))]
    reference = BayesianGaussianMixture(n_components=6, covariance_type="diag", reg_covar=1e-6,
                                        weight_concentration_prior_type="dirichlet_process",
                                        weight_concentration_prior=1e-3)
    reference._check_parameters(x)  # scikit-learn's own priors and EM steps, driven by hand
    reference._initialize(x, resp)
    for _ in range(15):
        reference._m_step(x, reference._e_step(x)[1])
    ours = FederatedBGM(n_components=6)
    ours.set_priors(moment_stats(x))
    ours.fit_from(x, resp, n_iter=15)
    np.testing.assert_allclose(ours.means_, reference.means_, rtol=1e-9)
    np.testing.assert_allclose(ours.covariances_, reference.covariances_, rtol=1e-9)
    for got, want in zip(ours.weight_concentration_, reference.weight_concentration_):
        np.testing.assert_allclose(got, want, rtol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(x), reference.predict_proba(x), atol=1e-9)


def test_three_sites_summing_statistics_equal_the_pooled_fit():
    pooled = FederatedBGM().fit(DATA)
    # unequal sites with different mixes of the modes, as hospitals differ
    order = np.argsort(DATA + RNG.normal(0, 3, DATA.size))
    parts = [DATA[order[:300]], DATA[order[300:1500]], DATA[order[1500:]]]
    sites = fit_on(parts)
    for site in sites:
        assert site.n_iter_ == pooled.n_iter_
        np.testing.assert_allclose(site.means_, pooled.means_, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(site.covariances_, pooled.covariances_, rtol=1e-8)
        np.testing.assert_allclose(site.weights_, pooled.weights_, rtol=1e-8, atol=1e-12)


def test_a_site_without_rows_takes_part_and_ends_with_the_same_mixture():
    sites = fit_on([DATA[:1000], np.empty(0), DATA[1000:]], max_iter=20)
    np.testing.assert_array_equal(sites[0].means_, sites[1].means_)
    np.testing.assert_array_equal(sites[2].weights_, sites[1].weights_)


def test_recovers_the_modes_of_a_well_separated_mixture():
    model = FederatedBGM().fit(DATA)
    heavy = model.weights_ > 0.05
    centres = np.sort(model.means_[heavy, 0])
    # every true mode has a fitted component within 0.5 of it, and the weights of those near it add up
    for centre, share in ((-5, 0.6), (2, 0.3), (8, 0.1)):
        near = np.abs(model.means_[:, 0] - centre) < 2.5
        assert np.min(np.abs(centres - centre)) < 0.5
        assert model.weights_[near].sum() == pytest.approx(share, abs=0.03)


def test_no_rows_on_any_site_is_an_error():
    with pytest.raises(ValueError, match="no rows"):
        FederatedBGM().fit(np.empty(0))
