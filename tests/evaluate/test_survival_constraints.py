"""Survival constraints counted on the synthetic rows, and the time-dependent AUROC against scikit-survival."""
import numpy as np
import pandas as pd
import pytest

from hpcsynth.comm import SoloComm
from hpcsynth.data.cohorts import COHORTS
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.suite import EvalSpec, evaluate
from hpcsynth.evaluate.survival import horizons, td_auroc

SURVIVAL_SCORES = ("survival_constraint_violations", "td_auroc_tstr", "td_auroc_trtr")


def _exponential_cohort(n: int, seed: int) -> pd.DataFrame:
    """Exponential event times (years) with hazard ratio 2 for a binary covariate `x` and 2.2 per standard
    deviation of `z` (a binary covariate alone ranks patients at an AUROC of about 0.58), independent uniform
    censoring and administrative end of follow-up at 10 years."""
    rng = np.random.default_rng(seed)
    x, z = rng.integers(0, 2, n), rng.normal(size=n)
    event_time = rng.exponential(1.0 / (0.15 * np.exp(np.log(2.0) * x + 0.8 * z)))
    censor_time = np.minimum(rng.uniform(0.0, 20.0, n), 10.0)
    return pd.DataFrame({"x": x.astype(float), "z": z,
                         "t": np.minimum(event_time, censor_time), "e": (event_time <= censor_time).astype(float)})


def test_constraint_violations_count_each_kind_once_and_a_row_once():
    real = pd.DataFrame({"age": [50.0, 60.0, 70.0, 80.0], "t": [1.0, 5.0, 9.0, 10.0], "e": [0, 1, 1, 0]})
    transformer = TableTransformer([], "t", "e").fit(real)
    synthetic = pd.DataFrame({"age": [55.0] * 6, "t": [3.0, 0.0, -1.0, 12.0, 4.0, np.nan],
                              "e": [1, 0, 1, 1, 2, 0]})
    spec = EvalSpec(time="t", event="e")
    result = evaluate(synthetic, real, real, transformer, SoloComm(), spec,
                      metrics=["survival_constraint_violations"])
    # row 1: time 0, row 2: negative time, row 3: after follow-up, row 4: event 2, row 5: no time
    assert result.scores == {"survival_constraint_violations": 5.0}
    assert result.notes["survival_constraint_violations"] == \
        "time <= 0: 3, time > follow-up: 1, event not declared: 1"


def test_td_auroc_equals_scikit_survival_on_an_exponential_cohort_with_hazard_ratio_two():
    from lifelines import CoxPHFitter
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.util import Surv

    train, test = _exponential_cohort(600, 0), _exponential_cohort(400, 1)
    at = horizons("years", np.array([]))
    got = td_auroc(train, train, test, ["x", "z"], "t", "e", at)
    model = CoxPHFitter(penalizer=0.01).fit(train, duration_col="t", event_col="e")
    risk = model.predict_log_partial_hazard(test[["x", "z"]]).to_numpy()
    expected, _ = cumulative_dynamic_auc(Surv.from_arrays(train["e"] > 0.5, train["t"]),
                                         Surv.from_arrays(test["e"] > 0.5, test["t"]), risk, at)
    assert np.allclose(got, expected, atol=1e-12)
    assert np.all(got > 0.6)


def test_horizons_are_years_in_the_unit_or_quartiles_of_event_times_and_out_of_follow_up_is_nan():
    assert np.allclose(horizons("months", np.array([])), [12.0, 36.0, 60.0])
    assert np.allclose(horizons("days", np.array([])), [365.25, 1095.75, 1826.25])
    assert np.allclose(horizons(None, np.arange(1.0, 6.0)), [2.0, 3.0, 4.0])
    cohort = _exponential_cohort(300, 2)
    got = td_auroc(cohort, cohort, cohort, ["x"], "t", "e", np.array([3.0, 50.0, np.nan]))
    assert np.isfinite(got[0]) and np.isnan(got[1:]).all()
    assert np.isnan(td_auroc(cohort.iloc[:5], cohort, cohort, ["x"], "t", "e", np.array([3.0]))).all()


def test_a_whole_evaluation_of_mds_has_the_survival_scores_and_a_table_without_survival_columns_has_none(
        mds, noisy_synthetic):
    train, holdout, site, transformer = mds
    spec = EvalSpec.default(transformer, COHORTS["mds"])
    assert spec.time_unit == "months"
    result = evaluate(noisy_synthetic, train, holdout, transformer, SoloComm(), spec, site=site, n_sites=3)
    jittered = noisy_synthetic["os_months"]  # the stand-in jitters times past the longest follow-up
    outside = (jittered <= 0) | (jittered > transformer.transform_of("os_months").max_)
    assert result.scores["survival_constraint_violations"] == float(outside.sum()) > 0
    assert 0.5 < result.scores["td_auroc_trtr"] <= 1.0 and 0.5 < result.scores["td_auroc_tstr"] <= 1.0
    assert result.notes["td_auroc_horizons"] == "12, 36, 60 months"
    plain = train.drop(columns=["os_months", "os_event"])
    no_survival = TableTransformer(["sex", "cyto_risk", "ipssr_category"], target="TP53").fit(plain)
    kept = noisy_synthetic.drop(columns=["os_months", "os_event"])
    scores = evaluate(kept, plain, holdout.drop(columns=["os_months", "os_event"]), no_survival, SoloComm(),
                      metrics=["quality", *SURVIVAL_SCORES]).scores
    assert "quality" in scores and not set(SURVIVAL_SCORES) & set(scores)


@pytest.mark.parametrize("name", [n for n, c in COHORTS.items() if c.time])
def test_every_named_survival_cohort_declares_its_time_unit(name):
    assert COHORTS[name].time_unit in ("days", "months", "years")
