"""The Bayesian network's survival time node: with a time and an event declared, the time is a leaf of
`time_bins` quantile bins whose parents are the event and the covariate that acts on it, so the synthetic rows
recover a simulated cohort's hazard ratio and Kaplan-Meier curve; the node's counts stay exact over sites and
noised with the other tables under differential privacy, in as many bins as the budget keeps useful; without an
event the network is as before."""
import numpy as np
import pandas as pd
import pytest

from hpcsynth.comm import SitesInOneProcess
from hpcsynth.models import BayesianNetwork, Generator
from hpcsynth.models.bayesnet import conditional_mutual_information, family_counts, useful_bins
from survival_support import check_survival, simulate

SURVIVAL = dict(time="time", event="event", categorical=["group"])
TREATED, TIME, EVENT = 0, 3, 4  # the cohort's columns: treated, age, group, time, event


@pytest.fixture(scope="module")
def cohort():
    """Seed 4: its own rows estimate a hazard ratio of 2.01 (see tests/test_survival_synthesis.py)."""
    return simulate(seed=4)


def test_conditional_mutual_information_is_the_bias_corrected_closed_form():
    # within each of 2 event levels, Y copies a uniform binary X: I(X; Y | Z) = log 2, less Z (X-1)(Y-1) / 2n
    copy = np.stack([np.diag([50.0, 50.0]), np.diag([30.0, 30.0])])
    assert conditional_mutual_information(copy) == pytest.approx(np.log(2) - 2 / (2 * 160))
    assert conditional_mutual_information(np.ones((2, 3, 4))) == pytest.approx(-2 * 2 * 3 / (2 * 24))


@pytest.mark.parametrize("structure", ["chow_liu", "bic"])
def test_the_time_is_a_fine_leaf_whose_parents_are_the_event_and_the_acting_covariate(cohort, structure):
    model = BayesianNetwork(structure=structure, **SURVIVAL).fit(cohort)
    assert model.time_node_ == (TIME, EVENT)
    assert model.parents_[TIME] == [TREATED, EVENT]       # not age or group, which do not act
    assert not [i for i, pa in enumerate(model.parents_) if TIME in pa]
    assert model.discretiser_.cards[TIME] == 50 and model.discretiser_.cards[1] == 10


def test_synthesis_recovers_the_hazard_ratio_and_the_survival_curve(cohort):
    check_survival(BayesianNetwork(seed=0, **SURVIVAL).fit(cohort).sample(6000), cohort)


def test_an_empty_configuration_of_the_times_parents_falls_back_to_the_events_time_distribution(cohort):
    model = BayesianNetwork(**SURVIVAL).fit(cohort)
    counts = model.counts_[TIME].copy()                   # rows: (treated, event) configurations, row-major
    counts[1 * 2 + 1] = 0.0                               # treated, with the event: no rows
    centre = counts[0 * 2 + 1] + 1.0                      # the event's times, smoothed by the prior
    assert np.allclose(model._cpt(TIME, counts)[1 * 2 + 1], centre / centre.sum())


def test_sites_fitting_together_equal_pooled_training_with_the_time_node(cohort):
    ordered = cohort.sort_values("age", ignore_index=True)    # sites that differ in case mix
    parts = [ordered.iloc[:400], ordered.iloc[400:900], ordered.iloc[900:]]

    def site(comm):
        model = BayesianNetwork(seed=3, **SURVIVAL)
        transformer = model.make_transformer().fit(parts[comm.rank], comm)
        model.setup(transformer).fit_counts(transformer.encode(parts[comm.rank]), comm)
        return model

    federated = SitesInOneProcess(3).run(site)[0]
    pooled = BayesianNetwork(seed=3, **SURVIVAL).fit(ordered)
    assert federated.parents_ == pooled.parents_ and federated.parents_[TIME] == [TREATED, EVENT]
    for got, want in zip(federated.cpts_, pooled.cpts_):
        assert np.array_equal(got, want)
    pd.testing.assert_frame_equal(federated.sample(300), pooled.sample(300))


def test_the_time_nodes_table_is_noised_with_the_others(cohort):
    model = BayesianNetwork(epsilon=2.0, structure_share=0.25, seed=7, time_bins=50, **SURVIVAL).fit(cohort)
    assert model.epsilon_spent_ == pytest.approx(2.0)
    codes = model.discretiser_.codes(model.transformer_.encode(cohort))
    exact = family_counts(codes, model.discretiser_.cards, TIME, model.parents_[TIME])
    b = 5 / (2.0 * 0.75)                                  # 5 tables, 75% of epsilon on the tables' release
    assert model.counts_[TIME].shape[1] == 50
    assert (model.counts_[TIME] - exact).var() == pytest.approx(2 * b**2, rel=0.3)


def test_under_a_budget_the_time_keeps_the_bins_its_noise_leaves_useful(cohort, tmp_path):
    """Rows per cell of the time's table at least 4 times the noise on a cell: floor(n / (4 b cells)) bins, with b
    the Laplace scale of 5 tables at 75% of epsilon and cells the configurations of the time's (noisily chosen)
    parents; three sites each noise their counts, so the summed noise is sqrt(3) times one site's. Without a
    budget, or with `time_bins` given, the bins are as asked."""
    assert useful_bins(1000.0, 2.0, 4) == 31 and useful_bins(10.0, 2.0, 4) == 2 and useful_bins(1e6, 1.0, 4) == 50
    n = len(cohort)
    for epsilon in (1.0, 4.0):
        model = BayesianNetwork(epsilon=epsilon, structure_share=0.25, seed=7, **SURVIVAL).fit(cohort)
        b = 5 / (epsilon * 0.75)
        cells = np.prod([model.discretiser_.cards[p] for p in model.parents_[TIME]])
        assert model.time_bins_ == max(2, int(n // (4 * b * cells))) == model.counts_[TIME].shape[1] < 50
        model.save(tmp_path / f"model{epsilon}.h5")
        loaded = Generator.load(tmp_path / f"model{epsilon}.h5")
        assert loaded.time_bins_ == model.time_bins_
        pd.testing.assert_frame_equal(loaded.sample(50, seed=1), model.sample(50, seed=1))
    assert BayesianNetwork(**SURVIVAL).fit(cohort).time_bins_ == 50
    assert BayesianNetwork(epsilon=1.0, time_bins=12, **SURVIVAL).fit(cohort).time_bins_ == 12

    def site(comm):
        model = BayesianNetwork(epsilon=4.0, structure_share=0.25, seed=comm.rank, **SURVIVAL)
        part = cohort.iloc[comm.rank::3]
        transformer = model.make_transformer().fit(part, comm)
        model.setup(transformer).fit_counts(transformer.encode(part), comm)
        return model.time_bins_, np.prod([model.discretiser_.cards[p] for p in model.parents_[TIME]])

    (bins, cells), *others = SitesInOneProcess(3).run(site)
    assert bins == max(2, int(n // (4 * np.sqrt(3) * 5 / 3.0 * cells))) and all(o[0] == bins for o in others)


def test_without_an_event_the_network_is_as_before(cohort):
    plain = BayesianNetwork(seed=1, categorical=["group"]).fit(cohort)
    timed = BayesianNetwork(seed=1, categorical=["group"], time="time").fit(cohort)
    assert timed.time_node_ is None and timed.parents_ == plain.parents_
    assert timed.discretiser_.cards == plain.discretiser_.cards
    pd.testing.assert_frame_equal(timed.sample(200), plain.sample(200))
