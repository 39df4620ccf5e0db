"""Anonymeter's risks per site: a release that copies the training rows shows high singling-out, linkability and
inference risks and fails the default release policy naming those checks; an independent draw of the same
population shows low ones; the scores are reproducible for one seed; the suite reports them, site-weighted."""
import numpy as np
import pytest

from hpcsynth.comm import SoloComm
from hpcsynth.data.mds import simulate_mds
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.anonymeter_risks import anonymeter_risks
from hpcsynth.evaluate.policy import DEFAULT_POLICY, evidence
from hpcsynth.evaluate.suite import EvalSpec, evaluate

N_ATTACKS = 150


@pytest.fixture(scope="module")
def cohort():
    """300 training and 300 held-out rows of one simulated MDS population, an independent draw of 300 more."""
    frame = simulate_mds(n_patients=600, n_sites=1, seed=1).drop(columns=["patient_id", "site"])
    fresh = simulate_mds(n_patients=300, n_sites=1, seed=7).drop(columns=["patient_id", "site"])
    train, holdout = frame.iloc[:300].reset_index(drop=True), frame.iloc[300:].reset_index(drop=True)
    transformer = TableTransformer(["sex", "cyto_risk", "ipssr_category"], "os_months", "os_event").fit(train)
    return train, holdout, fresh, transformer


@pytest.fixture(scope="module")
def copied(cohort):
    train, holdout, _, t = cohort
    return anonymeter_risks(train.copy(), train, holdout, t, ["TP53"], N_ATTACKS, seed=0)


@pytest.fixture(scope="module")
def independent(cohort):
    train, holdout, fresh, t = cohort
    return anonymeter_risks(fresh, train, holdout, t, ["TP53"], N_ATTACKS, seed=0)


def test_a_release_that_copies_training_rows_has_high_risks(copied):
    assert copied["singling_out_risk"] > 0.8 and copied["linkability_risk"] > 0.8
    assert copied["inference_risk"] > 0.5
    for name in ("singling_out_risk", "linkability_risk", "inference_risk"):
        assert copied[name] <= copied[f"{name}_ci_high"] <= 1.0


def test_an_independent_draw_has_low_singling_out_and_linkability_risks(independent):
    assert independent["singling_out_risk_ci_high"] < 0.3 and independent["linkability_risk_ci_high"] < 0.3
    assert independent["inference_risk"] < 0.5


def test_the_copied_release_fails_the_default_policy_naming_the_anonymeter_checks(copied, independent):
    failed = [o.check.name for o in DEFAULT_POLICY.judge(evidence(copied, {})) if o.passed is False and not o.missing]
    assert {"singling_out", "linkability", "inference"} <= set(failed)
    passed = {o.check.name for o in DEFAULT_POLICY.judge(evidence(independent, {})) if o.passed}
    assert {"singling_out", "linkability", "inference"} <= passed


def test_the_risks_are_the_same_for_one_seed_and_leave_numpys_global_stream_alone(cohort, independent):
    train, holdout, fresh, t = cohort
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    again = anonymeter_risks(fresh, train, holdout, t, ["TP53"], N_ATTACKS, seed=0)
    assert np.random.random() == expected
    assert again == independent


def test_without_a_sensitive_column_the_inference_risk_is_left_out(cohort):
    train, holdout, fresh, t = cohort
    got = anonymeter_risks(fresh.iloc[:60], train.iloc[:60], holdout.iloc[:60], t, [], 40)
    assert set(got) == {"singling_out_risk", "singling_out_risk_ci_high", "linkability_risk",
                        "linkability_risk_ci_high"}


def test_the_suite_reports_the_risks_weighted_by_each_sites_training_rows(sites, mds, noisy_synthetic):
    train, holdout, site, t = mds
    spec = EvalSpec(sensitive=["os_event"], n_attacks=60)
    names = ["singling_out_risk_ci_high", "linkability_risk", "inference_risk"]
    one = evaluate(noisy_synthetic, train, holdout, t, SoloComm(), spec, metrics=names).scores
    assert set(names) <= set(one) and all(0.0 <= one[n] <= 1.0 for n in names)
    weights = np.array([80.0, 40.0])
    parts = [train.iloc[:80], train.iloc[80:120]]
    held = [holdout.iloc[:60], holdout.iloc[60:120]]
    alone = [evaluate(noisy_synthetic, parts[k], held[k], t, SoloComm(), spec, metrics=names).scores for k in (0, 1)]
    pooled = sites(lambda comm, k: evaluate(noisy_synthetic, parts[k], held[k], t, comm, spec, metrics=names).scores, 2)
    for n in names:
        assert pooled[0][n] == pytest.approx(np.average([a[n] for a in alone], weights=weights))



def test_the_report_shows_each_risk_with_its_upper_bound_next_to_the_membership_attacks():
    from hpcsynth.evaluate.report import attacks_frame, attacks_html
    from hpcsynth.evaluate.suite import Evaluation

    scores = {"membership_auroc": 0.51, "singling_out_risk": 0.02, "singling_out_risk_ci_high": 0.11,
              "linkability_risk": 0.0, "linkability_risk_ci_high": 0.01, "domias_auroc": 0.53}
    frame = attacks_frame(Evaluation(scores=scores))
    assert frame["attack"].tolist() == ["singling_out_risk", "linkability_risk", "membership_auroc", "domias_auroc"]
    assert frame["95% upper bound"].tolist()[:2] == [0.11, 0.01]
    page = attacks_html(Evaluation(scores=scores))
    assert "<td>0.1100</td>" in page and "domias_auroc" in page and "inference_risk" not in page


def test_a_site_with_too_few_rows_gets_nan_risks_not_an_error(cohort):
    train, holdout, fresh, t = cohort
    got = anonymeter_risks(fresh, train.iloc[:1], holdout, t, ["TP53"])
    assert len(got) == 6 and all(np.isnan(v) for v in got.values())
