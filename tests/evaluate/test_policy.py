"""The release policy: each check reads its direction from the registry, compares with a number or another score,
fails when its score is missing (naming `hpcsynth evaluate`), and the DP check applies only with a budget; the
shipped docs/release-policy.yaml is the default policy."""
import math

import pytest

from hpcsynth.evaluate.policy import DEFAULT_POLICY, Check, evidence, load_policy
from hpcsynth.messages import ConfigError
from mpi_support import REPO

PASSING = {"exact_match_rate": 0.0, "dcr_synthetic_p5": 1.2, "dcr_holdout_p5": 1.0, "membership_auroc": 0.55,
           "domias_auroc": 0.52, "singling_out_risk_ci_high": 0.1, "linkability_risk_ci_high": 0.05,
           "inference_risk_ci_high": 0.4}


def test_the_shipped_policy_file_is_the_default_policy():
    assert load_policy(REPO / "docs" / "release-policy.yaml").checks == DEFAULT_POLICY.checks


def test_a_run_that_meets_every_check_passes_and_the_dp_check_does_not_apply_without_a_budget():
    outcomes = DEFAULT_POLICY.judge(evidence(PASSING, {}))
    assert all(o.passed for o in outcomes)
    assert [o.applies for o in outcomes] == [True] * 7 + [False]


def test_the_direction_of_the_score_decides_the_comparison():
    assert Check("m", "membership_auroc", 0.6).op == "<=" and Check("d", "dcr_synthetic_p5", 1.0).op == ">="
    assert not Check("m", "membership_auroc", 0.6).judge({"membership_auroc": 0.61}).passed
    assert not Check("d", "dcr_synthetic_p5", "dcr_holdout_p5").judge({"dcr_synthetic_p5": 0.9,
                                                                      "dcr_holdout_p5": 1.0}).passed
    assert not Check("c", "exact_match_rate", 0.0).judge({"exact_match_rate": 0.01}).passed
    assert not Check("n", "membership_auroc", 0.6).judge({"membership_auroc": math.nan}).passed


def test_a_failed_check_names_the_score_its_value_and_the_threshold():
    line = Check("not_closer", "dcr_synthetic_p5", "dcr_holdout_p5").judge(
        {"dcr_synthetic_p5": 0.25, "dcr_holdout_p5": 0.5}).line()
    assert line == "not_closer: dcr_synthetic_p5 = 0.25, must be >= dcr_holdout_p5 = 0.5 (failed)"


def test_a_missing_score_fails_and_says_to_run_hpcsynth_evaluate():
    outcome = Check("membership", "membership_auroc", 0.6).judge({"exact_match_rate": 0.0})
    assert not outcome.passed and outcome.missing == ("membership_auroc",)
    assert "membership_auroc" in outcome.line() and "hpcsynth evaluate" in outcome.line()


def test_with_dp_the_largest_epsilon_spent_is_held_to_the_budget():
    privacy = {"epsilon_budget": 1.0, "epsilon_spent": [0.7, 1.0 + 1e-12], "delta": 1e-5, "accountant": "rdp"}
    assert evidence({}, privacy)["epsilon_spent"] == pytest.approx(1.0)
    assert all(o.passed for o in DEFAULT_POLICY.judge(evidence(PASSING, privacy)))
    over = DEFAULT_POLICY.judge(evidence(PASSING, {**privacy, "epsilon_spent": [0.7, 1.3]}))
    assert [o.check.name for o in over if not o.passed] == ["privacy_budget"]


def test_a_policy_file_with_an_unknown_score_or_key_is_refused(tmp_path):
    bad = tmp_path / "policy.yaml"
    bad.write_text("checks:\n  - {name: x, metric: membership_aucroc, threshold: 0.6}\n")
    with pytest.raises(ConfigError, match="membership_aucroc"):
        load_policy(bad)
    bad.write_text("checks:\n  - {name: x, metric: membership_auroc, threshold: 0.6, op: '<'}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_policy(bad)
