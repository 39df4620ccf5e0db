"""The whole evaluation: three sites (in-process ranks) give the pooled figures exactly for every score the
registry declares exact, every score is declared, and the cohort's definition chooses the columns."""
import dataclasses

import numpy as np
import pytest

from hpcsynth.comm import SoloComm
from hpcsynth.data.cohorts import COHORTS
from hpcsynth.evaluate.metrics import METRICS
from hpcsynth.evaluate.suite import PARTS, EvalSpec, evaluate, part

# the scores checked here before the registry said which are exact: it must still call them exact
EXACT_BEFORE = ("column_shapes", "column_pair_trends", "quality", "category_coverage", "rare_category_coverage",
                "km_max_gap", "km_group_max_gap", "km_logrank_p", "gene_frequency_similarity",
                "co_mutation_agreement", "fairness_fidelity_min", "gsf")


def test_federated_evaluation_equals_pooled_for_every_score_declared_exact(mds, noisy_synthetic, sites):
    train, holdout, site, transformer = mds
    spec = EvalSpec.default(transformer, COHORTS["mds"])
    assert spec.genes[:2] == ["SF3B1", "TET2"] and spec.risk_group == "ipssr_category" and spec.cox[0] == "age"
    assert spec.sensitive == ["TP53"] and spec.quasi == ["age", "sex"]
    pooled = evaluate(noisy_synthetic, train, holdout, transformer, SoloComm(), spec, site, 3)
    assert set(pooled.scores) <= set(METRICS) and pooled.directions["detection_auroc"] == "lower"
    assert list(pooled.scores) == [k for k in METRICS if k in pooled.scores]  # the registry's order
    assert pooled.notes["fairness_fidelity_worst"] and 0 < pooled.scores["csf"] <= 1 and 0 < pooled.scores["gsf"] <= 1
    exact = [k for k in pooled.scores if METRICS[k].exact]
    assert set(EXACT_BEFORE) <= set(exact)
    train_site = np.random.default_rng(0).integers(0, 3, len(train))

    def site_run(comm, k):
        mine = site == k
        return evaluate(noisy_synthetic, train[train_site == k], holdout[mine], transformer, comm, spec, site[mine], 3)

    for result in sites(site_run, 3):
        assert set(result.scores) == set(pooled.scores)
        for key in exact:
            assert result.scores[key] == pytest.approx(pooled.scores[key], abs=1e-9, nan_ok=True), key
        assert result.fairness.fidelity == pytest.approx(pooled.fairness.fidelity, abs=1e-9)
        assert 0.0 <= result.scores["detection_auroc"] <= 1.0


def test_a_table_that_is_no_named_cohort_gets_the_generic_columns(mds):
    _, _, _, transformer = mds
    spec = EvalSpec.default(transformer)
    assert spec.genes[:2] == ["SF3B1", "TET2"]  # binary features named like gene symbols
    assert spec.risk_group is None and spec.sensitive == ["os_event"] and spec.quasi == ["age", "sex"]
    assert len(spec.cox) == 5 and "SF3B1" not in spec.cox
    assert "risk_group" not in spec.roles(1) and {"time", "event", "genes", "cox", "subgroups"} <= spec.roles(1)


def test_a_cohort_declaring_too_few_cox_covariates_present_falls_back_to_the_schema(mds):
    _, _, _, transformer = mds
    cohort = dataclasses.replace(COHORTS["mds"], cox_covariates=("age", "shoe_size"), risk_groups="nowhere")
    spec = EvalSpec.default(transformer, cohort)
    assert spec.cox == EvalSpec.default(transformer).cox and spec.risk_group is None


def test_a_part_runs_only_when_its_roles_are_known(mds, noisy_synthetic):
    train, holdout, site, transformer = mds
    spec = EvalSpec(time="os_months", event="os_event", target="os_event")  # no genes, cox, sensitive, subgroups
    result = evaluate(noisy_synthetic, train, holdout, transformer, SoloComm(), spec, site, 1)
    assert "km_max_gap" in result.scores and "tstr_auroc" in result.scores and "csf" in result.scores
    absent = ("gsf", "gene_frequency_similarity", "cox_hr_in_ci", "cindex_tstr", "attribute_inference_gain",
              "k_anonymity", "fairness_fidelity_min")
    assert not set(absent) & set(result.scores) and result.genomics is None and result.fairness is None


def test_registering_an_undeclared_score_or_returning_one_is_refused(mds, noisy_synthetic, monkeypatch):
    with pytest.raises(KeyError, match="not declared in hpcsynth.evaluate.metrics"):
        part("my_new_score")
    with pytest.raises(ValueError, match="site-weighted metrics only"):
        part("km_max_gap", local=True)
    train, holdout, site, transformer = mds
    monkeypatch.setattr("hpcsynth.evaluate.suite.PARTS", [])
    part("quality")(lambda ctx: {"quality": 1.0, "sneaky": 0.0})
    with pytest.raises(ValueError, match=r"undeclared scores \['sneaky'\]"):
        evaluate(noisy_synthetic, train, holdout, transformer, SoloComm(), EvalSpec())
    assert PARTS  # the real registry is untouched


def test_a_cohorts_outcome_columns_stay_out_of_the_utility_features():
    # flchain's cause of death is recorded for exactly the patients who died: read as a feature, TRTR is perfect
    from hpcsynth.data.cohorts import load_cohort
    from hpcsynth.data.transformer import TableTransformer

    cohort = COHORTS["flchain"]
    frame = load_cohort("flchain").sample(2000, random_state=0).reset_index(drop=True)
    train, holdout = frame.iloc[:1500], frame.iloc[1500:]
    transformer = TableTransformer(list(cohort.categorical), cohort.time, cohort.event).fit(train)
    spec = EvalSpec.default(transformer, cohort)
    assert spec.outcome_columns == ["chapter"]

    def trtr(s: EvalSpec) -> float:
        return evaluate(train, train, holdout, transformer, SoloComm(), s, metrics=["trtr_auroc"]).scores["trtr_auroc"]

    assert trtr(dataclasses.replace(spec, outcome_columns=[])) > 0.99
    assert 0.8 < trtr(spec) < 0.99
