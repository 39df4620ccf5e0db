"""The simulated MDS follow-up: its shape (the static cohort at the first visit, sorted days, AML only at the last
visit with blasts of at least 20%, no visit after death or censoring) and the dynamics that make temporal fidelity
testable, with margins that a simulator without them would miss."""
import numpy as np
import pandas as pd
import pytest

from hpcsynth.data.mds import IPSSR_CATEGORIES, simulate_mds
from hpcsynth.data.mds_followup import CONTEXT_COLUMNS, DAYS_PER_MONTH, VISIT_COLUMNS, simulate_mds_followup


@pytest.fixture(scope="module")
def cohort():
    return simulate_mds_followup(n_patients=1500, n_sites=3, seed=11)


def test_the_first_visit_is_the_static_cohort_and_the_context_its_static_columns(cohort):
    static = simulate_mds(n_patients=1500, n_sites=3, seed=11).sort_values("patient_id").reset_index(drop=True)
    first = cohort.visits.groupby("patient_id").head(1).reset_index(drop=True)
    assert (first["day"] == 0).all() and first["patient_id"].tolist() == static["patient_id"].tolist()
    for lab in ("hb", "anc", "plt", "bm_blasts"):
        np.testing.assert_array_equal(first[lab].to_numpy(), static[lab].to_numpy())
    pd.testing.assert_frame_equal(cohort.context, static[["patient_id", *CONTEXT_COLUMNS]])
    assert cohort.visit_columns == list(VISIT_COLUMNS)
    assert sorted(cohort.context["site"].unique()) == [0, 1, 2]


def test_visits_are_sorted_and_end_at_progression_death_or_censoring(cohort):
    v = cohort.visits
    gaps = v.groupby("patient_id")["day"].diff()
    assert (gaps[v["aml"] == 0].dropna() >= 7).all() and (gaps[v["aml"] == 1] >= 1).all()  # AML: an unplanned visit
    last = v.groupby("patient_id").tail(1).set_index("patient_id")
    end = cohort.context.set_index("patient_id")["os_months"] * DAYS_PER_MONTH
    assert (last["day"] <= end.loc[last.index] + 1).all()
    assert v["aml"].sum() == last["aml"].sum()  # progression only ever at the last visit
    progressed = v[v["aml"] == 1]
    assert (progressed["bm_blasts"] >= 20).all()
    assert v.loc[v["aml"] == 0, "bm_blasts"].max() < 20
    assert 0.08 < last["aml"].mean() < 0.30


def test_counts_fall_before_progression(cohort):
    v = cohort.visits
    aml_day = v[v["aml"] == 1].set_index("patient_id")["day"]
    before = v[v["patient_id"].isin(aml_day.index)].copy()
    before["to_aml"] = before["patient_id"].map(aml_day) - before["day"]
    late = before[(before["to_aml"] > 0) & (before["to_aml"] <= 90)]
    early = before[before["to_aml"] > 365]
    assert late["hb"].mean() < early["hb"].mean() - 1.0
    assert np.log(late["plt"]).mean() < np.log(early["plt"]).mean() - 0.5
    assert np.log(late["anc"]).mean() < np.log(early["anc"]).mean() - 0.4
    assert late["bm_blasts"].mean() > early["bm_blasts"].mean() + 3.0


def test_the_visit_interval_shortens_as_risk_rises(cohort):
    v = cohort.visits.merge(cohort.context[["patient_id", "ipssr_category"]], on="patient_id")
    v["interval"] = v.groupby("patient_id")["day"].diff()
    means = v.dropna(subset=["interval"]).groupby("ipssr_category")["interval"].mean().reindex(IPSSR_CATEGORIES)
    assert means.is_monotonic_decreasing and means.iloc[0] > 3 * means.iloc[-1]


def test_transfusion_dependence_follows_the_transfusions_of_the_last_16_weeks(cohort):
    v = cohort.visits
    assert (v.loc[v["transfusion"] == 1, "hb"] < 8).all()
    assert v.loc[v["transfusion_dependent"] == 1, "hb"].mean() < v.loc[v["transfusion_dependent"] == 0, "hb"].mean() - 1
    one = v[v["patient_id"] == v.loc[v["transfusion_dependent"] == 1, "patient_id"].iloc[0]]
    for _, row in one.iterrows():
        window = one[(one["day"] > row["day"] - 112) & (one["day"] <= row["day"])]
        assert row["transfusion_dependent"] == int(window["transfusion"].sum() >= 2)


def test_labs_correlate_between_consecutive_visits(cohort):
    v = cohort.visits.copy()
    v["previous"] = v.groupby("patient_id")["hb"].shift()
    pairs = v.dropna(subset=["hb", "previous"])
    assert 0.6 < np.corrcoef(pairs["hb"], pairs["previous"])[0, 1] < 0.98


def test_the_same_arguments_give_the_same_sequences():
    a, b = simulate_mds_followup(60, 2, seed=4), simulate_mds_followup(60, 2, seed=4)
    pd.testing.assert_frame_equal(a.visits, b.visits)
    assert not simulate_mds_followup(60, 2, seed=5).visits.equals(a.visits)
    assert sorted(a.context["site"].unique()) == [0, 1]
