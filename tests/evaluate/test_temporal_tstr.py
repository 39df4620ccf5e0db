"""Next-visit TSTR: features are what was known before each visit, a release with real dynamics predicts real
patients as well as real histories do, one with iid visits does not."""
import numpy as np
import pandas as pd
import sequence_cases as cases

from hpcsynth.evaluate.temporal_tstr import history_features, next_visit_utility

LABS = list(cases.LABS)


def test_history_features_use_only_earlier_visits_worked_by_hand():
    context = pd.DataFrame({cases.KEY: [0], "sex": ["M"]})
    visits = pd.DataFrame({cases.KEY: [0, 0, 0, 0], cases.INDEX: [0.0, 10.0, 25.0, 40.0],
                           "hb": [9.0, np.nan, 7.0, 6.0]})
    f = history_features(cases.from_frames(context, visits), ["hb"], {"sex": ["F", "M"]})
    assert f["visit"].tolist() == [0, 1, 2, 3] and f["gap"].tolist()[1:] == [10.0, 15.0, 15.0]
    assert np.isnan(f["hb_last"][0]) and f["hb_last"].tolist()[1:] == [9.0, 9.0, 7.0]
    assert f["hb_mean"].tolist()[1:] == [9.0, 9.0, 8.0] and f["hb_n"].tolist() == [0, 1, 1, 2]
    assert f["sex"].tolist() == [1, 1, 1, 1]


def test_a_release_with_the_real_dynamics_predicts_real_visits_and_iid_visits_do_not():
    real, train = cases.real_cohort(120, 0), cases.real_cohort(120, 4, first_key=5000)
    faithful = next_visit_utility(real, cases.faithful(real), LABS, train=train)
    iid = next_visit_utility(real, cases.iid_labs(real), LABS, train=train)
    assert faithful["temporal_trtr_r2"] > 0.5 and faithful["temporal_tstr_r2"] > faithful["temporal_trtr_r2"] - 0.1
    assert iid["temporal_tstr_r2"] < faithful["temporal_tstr_r2"] - 0.5
    assert iid["temporal_trtr_r2"] == faithful["temporal_trtr_r2"]  # TRTR does not read the release
    crossed = next_visit_utility(real, cases.faithful(real), LABS)  # without training patients: two folds
    assert crossed["temporal_trtr_r2"] > 0.5
