"""The whole evaluation: three sites (in-process ranks) give the pooled figures exactly where they are counts,
every score has a direction, and the composite scores are the means the docs define."""
import numpy as np
import pytest

from hpcsynth.evaluate.suite import DIRECTIONS, EvalSpec, evaluate
from hpcsynth.comm import SoloComm

EXACT = ("column_shapes", "column_pair_trends", "quality", "category_coverage", "rare_category_coverage",
         "km_max_gap", "km_group_max_gap", "km_logrank_p", "gene_frequency_similarity", "co_mutation_agreement",
         "fairness_fidelity_min", "gsf")


def test_federated_evaluation_equals_pooled_where_exact(mds, noisy_synthetic, sites):
    train, holdout, site, transformer = mds
    spec = EvalSpec.default(transformer)
    assert spec.genes[:2] == ["SF3B1", "TET2"] and spec.risk_group == "ipssr_category" and spec.cox[0] == "age"
    pooled = evaluate(noisy_synthetic, train, holdout, transformer, SoloComm(), spec, site, 3)
    assert set(pooled.scores) <= set(DIRECTIONS) and pooled.directions["detection_auroc"] == "lower"
    assert pooled.notes["fairness_fidelity_worst"] and 0 < pooled.scores["csf"] <= 1 and 0 < pooled.scores["gsf"] <= 1
    train_site = np.random.default_rng(0).integers(0, 3, len(train))

    def site_run(comm, k):
        mine = site == k
        return evaluate(noisy_synthetic, train[train_site == k], holdout[mine], transformer, comm, spec, site[mine], 3)

    for result in sites(site_run, 3):
        for key in EXACT:
            assert result.scores[key] == pytest.approx(pooled.scores[key], abs=1e-9), key
        assert result.fairness.fidelity == pytest.approx(pooled.fairness.fidelity, abs=1e-9)
        assert 0.0 <= result.scores["detection_auroc"] <= 1.0
