"""CSF and GSF are the means of their parts, ignoring parts that cannot be computed; every part and both scores
equal the numbers worked by hand on the small table of docs/composites.md."""
import math

import pytest

from hpcsynth.evaluate.composite import csf, gsf


def test_csf_and_gsf_are_means_of_available_parts():
    assert csf(0.9, 0.8, 0.1, 0.2, 1.0) == pytest.approx((0.9 + 0.8 + 0.9 + 0.8 + 1.0) / 5)
    assert csf(0.9, 0.8, float("nan"), float("nan"), float("nan")) == pytest.approx(0.85)
    assert gsf(0.9, 0.7, 0.5) == pytest.approx(0.7)
    assert math.isnan(gsf(float("nan"), float("nan"), float("nan")))


# The worked example of docs/composites.md: eight real (held-out) and eight synthetic rows.
REAL = {"age": [40, 45, 50, 55, 60, 70, 80, 90], "risk": ["low"] * 4 + ["high"] * 4,
        "os_months": [20, 16, 12, 8, 10, 6, 4, 2], "os_event": [0, 1, 0, 1, 1, 1, 0, 1],
        "SF3B1": [1, 1, 1, 1, 0, 0, 0, 0], "SRSF2": [0, 0, 0, 0, 1, 1, 1, 1]}
SYNTHETIC = {"age": [40, 50, 50, 60, 65, 75, 80, 90], "risk": ["low"] * 4 + ["high"] * 4,
             "os_months": [18, 14, 12, 6, 9, 5, 2, 20], "os_event": [0, 1, 1, 0, 1, 0, 1, 0],
             "SF3B1": [1, 1, 0, 0, 1, 0, 0, 0], "SRSF2": [1, 0, 0, 1, 0, 1, 1, 0]}
# Hand-worked in docs/composites.md; the one decimal is the correlation similarity of (age, os_months).
R_REAL, R_SYN = -697.5 / math.sqrt(2137.5 * 259.5), -182.5 / math.sqrt(2037.5 * 285.5)
CLINICAL_PAIRS = {("age", "risk"): 4 / 8, ("age", "os_months"): 0.651375, ("age", "os_event"): 1 / 8,
                  ("risk", "os_months"): 3 / 8, ("risk", "os_event"): 7 / 8, ("os_months", "os_event"): 4 / 8}
T_C = 0.504396
CSF = (29 / 32 + T_C + 17 / 24 + 29 / 48) / 4
GSF = 307 / 360


@pytest.fixture(scope="module")
def worked():
    import pandas as pd

    from hpcsynth.comm import SoloComm
    from hpcsynth.data.transformer import TableTransformer
    from hpcsynth.evaluate.suite import EvalSpec, evaluate

    real, synthetic = pd.DataFrame(REAL), pd.DataFrame(SYNTHETIC)
    transformer = TableTransformer(["risk", "os_event", "SF3B1", "SRSF2"], "os_months", "os_event").fit(real)
    spec = EvalSpec(time="os_months", event="os_event", risk_group="risk", genes=["SF3B1", "SRSF2"])
    return evaluate(synthetic, real, real, transformer, SoloComm(), spec, metrics=["csf", "gsf"])


def test_worked_example_correlation_is_pearsons_r():
    import numpy as np

    real, synthetic = (np.corrcoef(t["age"], t["os_months"])[0, 1] for t in (REAL, SYNTHETIC))
    assert (real, synthetic) == pytest.approx((R_REAL, R_SYN), abs=1e-12)
    assert 1 - abs(R_REAL - R_SYN) / 2 == pytest.approx(0.651375, abs=5e-7)


def test_worked_example_clinical_parts_equal_the_hand_numbers(worked):
    assert {c: worked.shapes[c] for c in ("age", "risk", "os_months", "os_event")} == \
        pytest.approx({"age": 7 / 8, "risk": 1.0, "os_months": 7 / 8, "os_event": 7 / 8}, abs=1e-12)
    assert {p: worked.pairs.scores[p] for p in CLINICAL_PAIRS} == pytest.approx(CLINICAL_PAIRS, abs=5e-7)
    assert worked.km.gaps == pytest.approx({"all": 7 / 24, "low": 5 / 12, "high": 3 / 8}, abs=1e-12)
    assert worked.scores["km_max_gap"] == pytest.approx(7 / 24, abs=1e-12)
    assert worked.scores["km_group_mean_gap"] == pytest.approx(19 / 48, abs=1e-12)
    assert "cox_hr_in_ci" not in worked.scores
    assert worked.scores["csf"] == pytest.approx(CSF, abs=1e-6) and round(worked.scores["csf"], 6) == 0.680786


def test_worked_example_genomic_parts_equal_the_hand_numbers(worked):
    g = worked.genomics
    assert g.real_p[0] == pytest.approx(1 / 35, abs=1e-12)
    assert (g.real_log_or[0], g.synthetic_log_or[0]) == pytest.approx((-math.log(81), math.log(3 / 7)), abs=1e-12)
    assert worked.scores["gene_frequency_similarity"] == pytest.approx(14 / 15, abs=1e-12)
    assert worked.pairs.scores[("SF3B1", "SRSF2")] == pytest.approx(5 / 8, abs=1e-12)
    assert worked.scores["co_mutation_agreement"] == 1.0
    assert worked.scores["gsf"] == pytest.approx(GSF, abs=1e-12) and round(GSF, 6) == 0.852778


def test_cox_share_pools_site_fits_by_inverse_variance(sites, monkeypatch):
    """The Cox part of docs/composites.md on given fits: covariate 1 inside the pooled 95% CI, covariate 2 not."""
    import numpy as np
    import pandas as pd

    from hpcsynth.evaluate import survival

    fits = {"site 1": ((0.04, 0.80), (0.02, 0.40)), "site 2": ((0.01, 0.20), (0.01, 0.20)),
            "synthetic": ((0.03, 0.75), (0.05, 0.30))}

    def fitted(frame, covariates, time, event):
        beta, se = fits[frame["who"].iloc[0]]
        return survival.CoxFit(list(covariates), np.array(beta), np.array(se), np.zeros(len(covariates)))

    monkeypatch.setattr(survival, "_cox", fitted)
    synthetic = pd.DataFrame({"who": ["synthetic"]})
    holdouts = [pd.DataFrame({"who": ["site 1"]}), pd.DataFrame({"who": ["site 2"]})]
    result = sites(lambda comm, k: survival.compare_cox(synthetic, holdouts[k], ["a", "b"], "t", "e", comm), 2)[0]
    assert result.real_log_hr == pytest.approx([0.016, 0.32], abs=1e-12)
    assert result.real_se == pytest.approx([12500 ** -0.5, 31.25 ** -0.5], abs=1e-12)
    assert result.scores()["cox_hr_in_ci"] == 0.5
    assert csf(29 / 32, T_C, 7 / 24, 19 / 48, 0.5) == pytest.approx(0.644629, abs=1e-6)
