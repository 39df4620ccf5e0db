"""Trajectory-level detection: a faithful release is near chance, releases broken in their dynamics, lengths or
spacing are told apart, and sites average their AUROCs weighted by held-out patients."""
import numpy as np
import pytest
import sequence_cases as cases

from hpcsynth.evaluate.temporal_detection import coded_summaries, site_detection, trajectory_detection

LABS = list(cases.LABS)


@pytest.fixture(scope="module")
def real():
    return cases.real_cohort(150, 0)


@pytest.mark.parametrize("broken", ["iid", "short", "stretched"])
def test_a_faithful_release_is_near_chance_and_a_broken_one_is_told_apart(real, broken):
    release = {"iid": cases.iid_labs(real), "short": cases.wrong_lengths(real),
               "stretched": cases.stretched_intervals(real)}[broken]
    faithful = site_detection(real, cases.faithful(real), LABS)
    assert faithful < 0.62 and site_detection(real, release, LABS) > faithful + 0.25


def test_context_categories_share_their_codes_between_real_and_synthetic(real):
    (x_real, x_syn), categorical = coded_summaries([real, cases.faithful(real)], LABS)
    assert categorical.sum() == 2 and x_real.shape[1] == x_syn.shape[1] == categorical.size
    assert set(np.unique(x_real[:, categorical])) == set(np.unique(x_syn[:, categorical])) == {0.0, 1.0}


def test_sites_average_their_aurocs_weighted_by_held_out_patients(real, sites):
    parts = cases.split_sites(real.__class__(real.context.iloc[:100], real.visits[real.visits[cases.KEY] < 100],
                                             cases.KEY, cases.INDEX), 3)
    release = cases.iid_labs(real)
    federated = sites(lambda comm, k: trajectory_detection(parts[k], release, LABS, comm), 3)
    alone = [site_detection(p, release, LABS) for p in parts]
    want = np.average(alone, weights=[p.n_patients for p in parts])
    assert federated == pytest.approx([want] * 3, rel=1e-12)


def test_a_small_site_still_tells_a_release_with_absurd_labs_apart():
    """25 held-out patients leave about 33 rows per training fold: scikit-learn's default of 20 rows per leaf
    allowed no split there, and every release scored the same AUROC near 0.5."""
    small = cases.real_cohort(25, 4)
    absurd = small
    for lab in LABS:
        absurd = cases.shifted_lab(absurd, lab, 100.0)
    assert site_detection(small, absurd, LABS) > 0.9
    assert site_detection(small, cases.faithful(small), LABS) < 0.8
