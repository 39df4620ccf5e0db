"""Temporal fidelity from counts: numbers worked by hand on tiny sequences, each score separating the broken
release it claims to detect from a faithful one, and the federated value equal to the pooled one (in-process
sites here; under real mpiexec for every score in test_temporal_score.py)."""
import numpy as np
import pandas as pd
import pytest
import sequence_cases as cases

from hpcsynth.evaluate.temporal import (
    TimeProfile,
    autocorrelation,
    event_order_counts,
    falling_before_event,
    interval_similarity,
    intervals,
    labs_of,
    length_similarity,
    time_profiles,
    visit_marginals,
)


def tiny(visits: list[tuple], context: dict | None = None):
    """Sequences from (patient, day, hb, progression) rows."""
    frame = pd.DataFrame(visits, columns=[cases.KEY, cases.INDEX, "hb", cases.EVENT])
    keys = sorted(frame[cases.KEY].unique())
    return cases.from_frames(pd.DataFrame({cases.KEY: keys, **(context or {})}), frame)


@pytest.fixture(scope="module")
def cohort():
    real = cases.real_cohort(150, 0)
    return real, {"faithful": cases.faithful(real), "shuffled": cases.shuffled_order(real),
                  "iid": cases.iid_labs(real), "short": cases.wrong_lengths(real),
                  "stretched": cases.stretched_intervals(real), "shifted": cases.shifted_lab(real, "hb", 1.5)}


def test_autocorrelation_is_the_pooled_within_patient_estimator_worked_by_hand():
    one = tiny([(0, d, x, 0) for d, x in zip((0, 5, 9, 20), (1.0, 2.0, 3.0, 4.0))])
    # deviations from the mean 2.5: -1.5, -0.5, 0.5, 1.5; sum of squares 5
    assert autocorrelation(one, "hb", 1) == pytest.approx((0.75 - 0.25 + 0.75) / 5)
    assert autocorrelation(one, "hb", 2) == pytest.approx((-0.75 - 0.75) / 5)
    # a second patient (levels 10 and 12, a missing visit skipped) adds its products and squares, never a pair
    # across patients: lag 1 adds (-1)(1), squares add 2
    two = tiny([(0, d, x, 0) for d, x in zip((0, 5, 9, 20), (1.0, 2.0, 3.0, 4.0))]
               + [(1, 0, 10.0, 0), (1, 3, np.nan, 0), (1, 8, 12.0, 0)])
    assert autocorrelation(two, "hb", 1) == pytest.approx((1.25 - 1.0) / 7)
    assert np.isnan(autocorrelation(tiny([(0, 0, 3.0, 0), (1, 0, 4.0, 0)]), "hb", 1))


def test_intervals_lengths_and_their_similarity_worked_by_hand():
    real = tiny([(0, 0, 1, 0), (0, 10, 1, 0), (0, 30, 1, 0), (1, 0, 1, 0), (1, 5, 1, 0)])
    synthetic = tiny([(7, 0, 1, 0), (7, 10, 1, 0), (7, 30, 1, 0), (7, 70, 1, 0)])
    assert intervals(real).tolist() == [10, 20, 5] and intervals(synthetic).tolist() == [10, 20, 40]
    # real CDF at 5, 10, 20: 1/3, 2/3, 1; synthetic: 0, 1/3, 2/3 -> KS 1/3
    assert interval_similarity(real, synthetic) == pytest.approx(2 / 3)
    # lengths 3, 2 against 4: the real CDF is 1 below 4 -> KS 1
    assert length_similarity(real, synthetic) == 0.0 and length_similarity(real, real) == 1.0


def test_event_order_counts_onsets_after_a_falling_lab_worked_by_hand():
    seqs = tiny([(0, 0, 9.0, 0), (0, 5, 8.0, 0), (0, 9, 7.0, 1),  # falling into the onset
                 (1, 0, 7.0, 0), (1, 4, 8.0, 1), (1, 6, 6.0, 1),  # rising into its onset (the later 1 ignored)
                 (2, 0, 9.0, 0), (2, 3, 8.0, 0), (2, 5, np.nan, 1),  # the latest measured value counts
                 (3, 0, 5.0, 1),  # an onset at the first visit cannot be told
                 (4, 0, 5.0, 0), (4, 9, 4.0, 0)])  # no event
    assert event_order_counts(seqs, cases.EVENT, "hb").tolist() == [2.0, 3.0]
    assert falling_before_event(seqs, cases.EVENT, "hb") == pytest.approx(2 / 3)


def test_a_time_profile_gap_is_the_weighted_mean_gap_in_units_of_the_real_spread():
    edges = np.array([0.0, 10.0, 20.0])
    real = np.array([[3.0, 1.0], [1.0, 4.0], [0.0, 0.0]])  # 3 values at 1, one at 4: overall sd sqrt(27/16)
    synthetic = np.array([[5.0, 5.0], [2.0, 4.0], [1.0, 1.0]])
    gap = TimeProfile("hb", edges, real, synthetic).gap()
    assert gap == pytest.approx((3 * 1.0 + 1 * 0.0) / 4 / np.sqrt(27 / 16))
    seqs = tiny([(0, 0, 1.0, 0), (0, 12, 4.0, 0), (1, 0, 1.0, 0), (2, 0, 1.0, 0)])
    profile = time_profiles(seqs, seqs, ["hb"], n_bins=2)[0]
    np.testing.assert_allclose(profile.edges, [0.0, 6.0, 12.0])  # two bins up to the latest real visit
    np.testing.assert_allclose(profile.real, real)
    assert profile.gap() == 0.0


def test_visit_marginals_score_numbers_by_ks_and_categories_by_total_variation():
    real = cases.from_frames(pd.DataFrame({cases.KEY: [0, 1]}), pd.DataFrame(
        {cases.KEY: [0, 0, 1, 1], cases.INDEX: [0, 1, 0, 1], "hb": [1.0, 2.0, 3.0, 4.0],
         "grade": ["a", "a", "b", None]}))
    synthetic = cases.from_frames(pd.DataFrame({cases.KEY: [5]}), pd.DataFrame(
        {cases.KEY: [5, 5], cases.INDEX: [0, 1], "hb": [1.0, 2.0], "grade": ["a", "c"]}))
    shapes = visit_marginals(real, synthetic)
    assert shapes["hb"] == pytest.approx(0.5)  # the synthetic CDF reaches 1 at 2, the real one 1/2
    # real a, a, b, missing against a, c: TV = (|1/2 - 1/2| + 1/4 + 1/2 + 1/4) / 2
    assert shapes["grade"] == pytest.approx(0.5)
    assert labs_of(real) == ["hb"]


@pytest.mark.parametrize("broken, score", [
    ("shuffled", "autocorrelation"), ("iid", "autocorrelation"), ("shuffled", "event_order"),
    ("iid", "event_order"), ("short", "lengths"), ("stretched", "intervals"), ("shifted", "marginals"),
    ("shifted", "time_profile"), ("short", "time_profile")])
def test_each_score_rates_a_faithful_release_above_the_release_broken_where_it_looks(cohort, broken, score):
    real, releases = cohort

    def badness(synthetic) -> float:
        if score == "autocorrelation":
            return np.mean([abs(autocorrelation(real, lab, 1) - autocorrelation(synthetic, lab, 1))
                            for lab in cases.LABS])
        if score == "event_order":
            return abs(falling_before_event(real, cases.EVENT, "hb")
                       - falling_before_event(synthetic, cases.EVENT, "hb"))
        if score == "lengths":
            return 1 - length_similarity(real, synthetic)
        if score == "intervals":
            return 1 - interval_similarity(real, synthetic)
        if score == "marginals":
            return 1 - visit_marginals(real, synthetic)["hb"]
        return np.mean([p.gap() for p in time_profiles(real, synthetic, list(cases.LABS))])

    good, bad = badness(releases["faithful"]), badness(releases[broken])
    assert bad > good + 0.15, (good, bad)


def test_sites_merged_by_allreduce_score_as_the_pooled_patients(cohort, sites):
    real, releases = cohort
    synthetic = releases["shuffled"]
    parts = cases.split_sites(real, 3)

    def scores(comm, site=None) -> list[float]:
        mine = parts[site] if site is not None else real
        shapes = visit_marginals(mine, synthetic, comm)
        return [*shapes.values(), length_similarity(mine, synthetic, comm), interval_similarity(mine, synthetic, comm),
                autocorrelation(mine, "hb", 1, comm), autocorrelation(mine, "plt", 2, comm),
                falling_before_event(mine, cases.EVENT, "hb", comm),
                *[p.gap() for p in time_profiles(mine, synthetic, list(cases.LABS), comm)]]

    pooled = scores(None)
    federated = sites(lambda comm, k: scores(comm, k), 3)
    for each in federated:
        np.testing.assert_allclose(each, pooled, rtol=1e-12, atol=1e-12)
    alone = scores(None, 0)
    assert not np.allclose(alone, pooled)  # one site alone differs: the merge is what makes them equal
