"""A built-in simulator of a multi-site myelodysplastic-syndromes (MDS) registry, for demos, tests and benchmarks.

Mixed column types, censored survival, correlated driver mutations, registry missingness and sites that differ
(a referral centre to a community hospital); no real patient is behind any row. A latent severity drives
cytogenetics, mutations, blood counts, the IPSS-R and survival; the intercepts are solved once on a fixed
reference draw so that the pooled marginals equal the published targets. How it is built, and every choice
made where the sources differ: docs/datasets.md (The built-in MDS cohort). Sources:
[1] Greenberg et al., Blood 2012;120:2454 (IPSS-R)    [2] Schanz et al., J Clin Oncol 2012;30:820
[3] Papaemmanuil et al., Blood 2013;122:3616          [4] Haferlach et al., Leukemia 2014;28:241
[5] Bernard et al., NEJM Evidence 2022 (IPSS-M)       [6] Thol et al., Blood 2012;119:3211
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from os import PathLike

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import norm

MDS_GENES: tuple[str, ...] = (
    "SF3B1", "TET2", "ASXL1", "SRSF2", "DNMT3A", "RUNX1", "U2AF1", "TP53", "STAG2", "EZH2",
    "ZRSR2", "CBL", "BCOR", "NRAS", "IDH2", "IDH1", "ETV6", "SETBP1", "JAK2", "KRAS",
)
CYTO_RISK_GROUPS: tuple[str, ...] = ("very_good", "good", "intermediate", "poor", "very_poor")
IPSSR_CATEGORIES: tuple[str, ...] = ("very_low", "low", "intermediate", "high", "very_high")

MDS_METADATA: dict = {
    "site_column": "site",
    "id_columns": ["patient_id"],
    "time": "os_months",
    "event": "os_event",
    "categorical": ["sex", "cyto_risk", "ipssr_category"],
}

#: Target share of mutated patients per gene, MDS proper (see the module docstring for the choice).
GENE_FREQUENCIES: dict[str, float] = {
    "SF3B1": 0.22, "TET2": 0.22, "ASXL1": 0.17, "SRSF2": 0.13, "DNMT3A": 0.11, "RUNX1": 0.10,
    "U2AF1": 0.07, "TP53": 0.08, "STAG2": 0.06, "EZH2": 0.05, "ZRSR2": 0.05, "CBL": 0.04, "BCOR": 0.04,
    "NRAS": 0.04, "IDH2": 0.03, "IDH1": 0.02, "ETV6": 0.02, "SETBP1": 0.02, "JAK2": 0.02, "KRAS": 0.02,
}
_CYTO_SHARES = np.array([0.04, 0.72, 0.13, 0.04, 0.07])  # [2]
_CYTO_POINTS = {label: float(points) for points, label in enumerate(CYTO_RISK_GROUPS)}  # [1]
_CATEGORY_UPPER = np.array([1.5, 3.0, 4.5, 6.0])  # [1]: right-closed upper bounds of the first four groups
_MEDIAN_OS_YEARS = np.array([8.8, 5.3, 3.0, 1.6, 0.8])  # [1]
_AML_BY_CATEGORY = np.array([0.08, 0.18, 0.36, 0.52, 0.66])  # our choice, ordered as [1]; ~29% pooled

# Panels test the first k genes of this order: the 8 most frequent drivers are on every myeloid panel.
_PANEL_ORDER: tuple[str, ...] = (
    "SF3B1", "TET2", "ASXL1", "SRSF2", "DNMT3A", "RUNX1", "U2AF1", "TP53",
    "STAG2", "EZH2", "ZRSR2", "NRAS", "IDH2", "IDH1",
    "CBL", "BCOR", "ETV6", "SETBP1", "JAK2", "KRAS",
)
_SPLICING: tuple[str, ...] = ("SF3B1", "SRSF2", "U2AF1", "ZRSR2")
# Non-splicing genes after TP53, drawn in this order: (gene, loading on severity z, {partner: log odds ratio}).
_GENE_STEPS: tuple[tuple[str, float, dict[str, float]], ...] = (
    ("TET2", 0.0, {"SRSF2": 1.1, "ZRSR2": 0.7}),
    ("ASXL1", 0.5, {"SRSF2": 1.0, "U2AF1": 0.6}),
    ("DNMT3A", 0.0, {"SF3B1": 0.8}),
    ("RUNX1", 0.4, {"SRSF2": 0.8, "ASXL1": 0.9}),
    ("STAG2", 0.4, {"SRSF2": 0.9, "ASXL1": 1.0}),
    ("EZH2", 0.3, {"ASXL1": 1.1}),
    ("IDH2", 0.4, {"SRSF2": 1.3}),
    ("NRAS", 0.4, {}), ("CBL", 0.3, {}), ("BCOR", 0.3, {}), ("IDH1", 0.3, {}),
    ("ETV6", 0.3, {}), ("SETBP1", 0.3, {}), ("KRAS", 0.3, {}), ("JAK2", 0.0, {}),
)
_OS_LOG_HR: dict[str, float] = {
    "SF3B1": np.log(0.7), "TP53": np.log(3.0),
    **{gene: np.log(1.4) for gene in ("ASXL1", "RUNX1", "EZH2", "SRSF2", "U2AF1", "STAG2")},
}
_AML_LOG_OR: dict[str, float] = {
    "TP53": 0.8, "RUNX1": 0.5, "NRAS": 0.5, "IDH2": 0.4, "SF3B1": -0.6,
    **{gene: 0.3 for gene in ("ASXL1", "SRSF2", "U2AF1", "STAG2", "EZH2")},
}
_AGE_LOG_HR_PER_YEAR = np.log(1.03)
_WEIBULL_SHAPE = 1.1
_FOLLOW_UP_YEARS = (1.0, 14.0)  # uniform time from diagnosis to data lock (accrual window)
_LOSS_RATE_PER_YEAR = 0.03
_REFERENCE_ROWS = 100_000
_REFERENCE_SEED = 20_120_454  # fixed: the calibration must not depend on the caller's seed


@dataclass(frozen=True)
class _Sites:
    """Per-site profiles, one array entry per site, from the referral centre to the community hospital."""

    sizes: np.ndarray
    risk_shift: np.ndarray
    age_mean: np.ndarray
    age_sd: np.ndarray
    panel_size: np.ndarray
    karyotype_failure: np.ndarray
    lab_missing: np.ndarray


def _site_sizes(n_patients: int, weights: np.ndarray) -> np.ndarray:
    """Split n_patients by weights with at least one patient per site (largest remainders, exact total)."""
    spare = n_patients - len(weights)
    quota = spare * weights / weights.sum()
    sizes = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - sizes), kind="stable")
    sizes[order[: spare - sizes.sum()]] += 1
    return sizes + 1


def _site_profiles(n_patients: int, n_sites: int) -> _Sites:
    """Interpolate every profile linearly from site 0 (referral: large, younger, higher risk, 20 genes)
    to the last site (community: small, older, lower risk, 8 genes, more missing data)."""
    f = np.linspace(0.0, 1.0, n_sites) if n_sites > 1 else np.zeros(1)
    sizes = _site_sizes(n_patients, 1.0 - 0.49 * f)
    shift = 0.35 - 0.70 * f
    shift = shift - np.average(shift, weights=sizes)  # pooled severity stays centred whatever the split
    return _Sites(
        sizes=sizes,
        risk_shift=shift,
        age_mean=68.0 + 9.0 * f,
        age_sd=10.0 - 1.5 * f,
        panel_size=np.rint(20 - 12 * f).astype(int),
        karyotype_failure=0.03 + 0.02 * f,
        lab_missing=0.01 + 0.02 * f,
    )


class _Intercepts:
    """Intercepts that make the pooled marginals hit their targets.

    While `solving`, each step solves its intercept on the rows it is given (the reference draw); afterwards
    the stored values are reused, so a simulation never calibrates on its own rows."""

    def __init__(self) -> None:
        self.values: dict[str, np.ndarray | float] = {}
        self.solving = True

    def binary(self, key: str, scores: np.ndarray, target: float) -> float:
        """Intercept a such that mean(expit(a + scores)) == target."""
        if self.solving:
            self.values[key] = brentq(lambda a: expit(a + scores).mean() - target, -30.0, 30.0)
        return self.values[key]

    def softmax(self, key: str, scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Class intercepts (column 0 fixed at 0) such that the mean softmax probabilities equal targets."""
        if self.solving:
            alpha = np.zeros(scores.shape[1])
            for _ in range(200):
                mean_p = _softmax(scores + alpha).mean(axis=0)
                step = np.log(targets / mean_p)
                alpha += step - step[0]
                if np.abs(step - step[0]).max() < 1e-10:
                    break
            self.values[key] = alpha
        return self.values[key]

    def median_scale(self, key: str, log_hr: np.ndarray) -> float:
        """log h such that mean(exp(-h * exp(log_hr))) == 1/2: the group's survival curve crosses 1/2 at its
        published median when the cumulative hazard is h * exp(log_hr) * (t / median) ** shape."""
        if self.solving:
            self.values[key] = brentq(lambda lh: np.exp(-np.exp(lh + log_hr)).mean() - 0.5, -30.0, 30.0)
        return self.values[key]


def _softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so that large scores cannot overflow."""
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@lru_cache(maxsize=1)
def _reference_intercepts() -> _Intercepts:
    """Solve all intercepts once on a large fixed draw of the default three-site cohort."""
    intercepts = _Intercepts()
    _simulate_complete(np.random.default_rng(_REFERENCE_SEED), _site_profiles(_REFERENCE_ROWS, 3), intercepts)
    intercepts.solving = False
    return intercepts


def ipssr_score(
    cyto_risk: ArrayLike, bm_blasts: ArrayLike, hb: ArrayLike, plt: ArrayLike, anc: ArrayLike
) -> np.ndarray:
    """IPSS-R score with the exact point table of Greenberg et al. 2012 [1]; vectorised, NaN where any input is
    missing.

    Points: cytogenetics very good 0, good 1, intermediate 2, poor 3, very poor 4; marrow blasts <=2% 0,
    >2-<5% 1, 5-10% 2, >10% 3; haemoglobin >=10 g/dL 0, 8-<10 1, <8 1.5; platelets >=100 x10^9/L 0, 50-<100 0.5,
    <50 1; neutrophils >=0.8 x10^9/L 0, <0.8 0.5. Cytogenetic labels are those of `CYTO_RISK_GROUPS`; an
    unknown label raises ValueError rather than silently scoring NaN.
    """
    cyto = pd.Series(np.asarray(cyto_risk, dtype=object).ravel())
    points = cyto.map(_CYTO_POINTS).to_numpy(dtype=float)
    unknown = cyto.notna().to_numpy() & np.isnan(points)
    if unknown.any():
        raise ValueError(f"unknown cytogenetic risk {sorted(set(cyto[unknown]))}; expected one of {CYTO_RISK_GROUPS}")
    points = points.reshape(np.shape(cyto_risk))
    blasts, hb, plt, anc = (np.asarray(x, dtype=float) for x in (bm_blasts, hb, plt, anc))
    blast_points = np.select([blasts <= 2, blasts < 5, blasts <= 10], [0.0, 1.0, 2.0], 3.0)
    hb_points = np.select([hb >= 10, hb >= 8], [0.0, 1.0], 1.5)
    plt_points = np.select([plt >= 100, plt >= 50], [0.0, 0.5], 1.0)
    anc_points = np.where(anc >= 0.8, 0.0, 0.5)
    total = points + blast_points + hb_points + plt_points + anc_points
    missing = np.isnan(blasts) | np.isnan(hb) | np.isnan(plt) | np.isnan(anc)
    return np.where(missing, np.nan, total)


def ipssr_category(score: ArrayLike) -> np.ndarray:
    """IPSS-R risk group of a score [1]: very low <=1.5, low >1.5-3, intermediate >3-4.5, high >4.5-6,
    very high >6; an object array of labels, None where the score is NaN."""
    score = np.asarray(score, dtype=float)
    codes = np.searchsorted(_CATEGORY_UPPER, score, side="left")  # side="left": upper bounds are inclusive
    labels = np.array(IPSSR_CATEGORIES, dtype=object)[np.minimum(codes, len(IPSSR_CATEGORIES) - 1)]
    return np.where(np.isnan(score), None, labels)


def _draw_cytogenetics(rng: np.random.Generator, z: np.ndarray) -> np.ndarray:
    """Ordinal cytogenetic group codes 0..4 from a latent tied to severity; the cut-points give the pooled
    shares of [2] exactly because the latent is standard normal."""
    latent = 0.6 * z + 0.8 * rng.standard_normal(len(z))
    return np.searchsorted(norm.ppf(np.cumsum(_CYTO_SHARES)[:-1]), latent)


def _draw_mutations(
    rng: np.random.Generator, z: np.ndarray, cyto: np.ndarray, intercepts: _Intercepts
) -> dict[str, np.ndarray]:
    """Driver mutations as booleans, drawn in order: TP53 (on cytogenetics), one splicing class, the rest."""
    n = len(z)
    genes: dict[str, np.ndarray] = {}
    tp53_scores = 0.3 * z + np.array([0.0, 0.0, 0.5, 1.2, 3.0])[cyto]
    tp53_alpha = intercepts.binary("TP53", tp53_scores, GENE_FREQUENCIES["TP53"])
    genes["TP53"] = rng.random(n) < expit(tp53_alpha + tp53_scores)

    tp53 = genes["TP53"].astype(float)
    adverse_karyotype = (cyto >= 3).astype(float)
    splice_scores = np.column_stack([
        np.zeros(n),
        -0.9 * z - 2.0 * tp53 - 1.0 * adverse_karyotype,  # SF3B1: low risk, low blasts [3, 6]
        0.5 * z - 1.0 * tp53,  # SRSF2: higher-risk disease [6]
        0.2 * z - 1.0 * tp53,
        0.2 * z - 1.0 * tp53,
    ])
    targets = np.array([GENE_FREQUENCIES[g] for g in _SPLICING])
    alpha = intercepts.softmax("splicing", splice_scores, np.concatenate([[1.0 - targets.sum()], targets]))
    cumulative = np.cumsum(_softmax(splice_scores + alpha), axis=1)
    splice_class = (rng.random(n)[:, None] > cumulative[:, :-1]).sum(axis=1)
    for k, gene in enumerate(_SPLICING, start=1):
        genes[gene] = splice_class == k

    for gene, loading, partners in _GENE_STEPS:
        scores = loading * z + sum(weight * genes[p] for p, weight in partners.items())
        alpha = intercepts.binary(gene, scores, GENE_FREQUENCIES[gene])
        genes[gene] = rng.random(n) < expit(alpha + scores)
    return genes


def _draw_blood_and_marrow(
    rng: np.random.Generator, z: np.ndarray, genes: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Marrow blasts and blood counts from severity and mutations, rounded as laboratories report them."""
    n = len(z)
    sf3b1, srsf2 = genes["SF3B1"].astype(float), genes["SRSF2"].astype(float)
    blast_latent = (
        1.05 * z + 0.95 * rng.standard_normal(n) - 0.7 * sf3b1
        + 0.4 * genes["TP53"] + 0.3 * genes["RUNX1"] + 0.2 * srsf2 + 0.2 * genes["STAG2"]
    )
    # A logistic squash keeps blasts below the 20% that would make the disease AML.
    blasts = 19.9 * expit(-2.15 + 1.25 * blast_latent)
    hb = 9.5 - 0.55 * z - 0.5 * sf3b1 + 1.3 * rng.standard_normal(n)
    plt = np.exp(np.log(125.0) - 0.3 * z + 0.4 * sf3b1 - 0.3 * srsf2 + 0.85 * rng.standard_normal(n))
    anc = np.exp(np.log(1.6) - 0.35 * z + 0.7 * rng.standard_normal(n))
    return {
        "hb": np.round(np.clip(hb, 4.0, 16.5), 1),
        "plt": np.round(np.clip(plt, 2.0, 1500.0)),
        "anc": np.round(np.clip(anc, 0.02, 12.0), 2),
        "bm_blasts": np.round(blasts, 1),
    }


def _draw_survival(
    rng: np.random.Generator, category: np.ndarray, log_hr: np.ndarray, intercepts: _Intercepts
) -> tuple[np.ndarray, np.ndarray]:
    """Weibull overall survival in months, scaled so each IPSS-R group's median is the published one [1],
    censored at data lock or on loss to follow-up."""
    years = np.empty(len(category))
    for c, median in enumerate(_MEDIAN_OS_YEARS):
        rows = category == c
        log_h = intercepts.median_scale(f"os_{c}", log_hr[rows])
        hazard = np.exp(log_h + log_hr[rows])
        years[rows] = median * (rng.standard_exponential(rows.sum()) / hazard) ** (1.0 / _WEIBULL_SHAPE)
    censor = np.minimum(
        rng.uniform(*_FOLLOW_UP_YEARS, len(category)),
        rng.standard_exponential(len(category)) / _LOSS_RATE_PER_YEAR,
    )
    event = (years <= censor).astype(np.int64)
    months = np.maximum(np.round(12.0 * np.minimum(years, censor), 1), 0.1)
    return months, event


def _draw_aml(
    rng: np.random.Generator, category: np.ndarray, genes: dict[str, np.ndarray], intercepts: _Intercepts
) -> np.ndarray:
    """Progression to AML: a per-group rate [1] shifted by the mutations IPSS-M weighs for transformation [5]."""
    scores = sum(weight * genes[g] for g, weight in _AML_LOG_OR.items())
    alpha = np.empty(len(category))
    for c, target in enumerate(_AML_BY_CATEGORY):
        rows = category == c
        alpha[rows] = intercepts.binary(f"aml_{c}", scores[rows], target)
    return (rng.random(len(category)) < expit(alpha + scores)).astype(np.int64)


def _simulate_complete(rng: np.random.Generator, sites: _Sites, intercepts: _Intercepts) -> pd.DataFrame:
    """Every column before registry missingness, with a site index; outcomes use these complete values."""
    site = np.repeat(np.arange(len(sites.sizes)), sites.sizes)
    n = len(site)
    spread = np.sqrt(1.0 - np.average(sites.risk_shift**2, weights=sites.sizes))
    z = sites.risk_shift[site] + spread * rng.standard_normal(n)
    age = np.round(np.clip(rng.normal(sites.age_mean[site], sites.age_sd[site]), 18.0, 99.0), 1)
    sex = np.where(rng.random(n) < 0.6, "M", "F")
    cyto = _draw_cytogenetics(rng, z)
    genes = _draw_mutations(rng, z, cyto, intercepts)
    labs = _draw_blood_and_marrow(rng, z, genes)
    cyto_labels = np.array(CYTO_RISK_GROUPS, dtype=object)[cyto]
    score = ipssr_score(cyto_labels, labs["bm_blasts"], labs["hb"], labs["plt"], labs["anc"])
    category = np.searchsorted(_CATEGORY_UPPER, score, side="left")
    log_hr = _AGE_LOG_HR_PER_YEAR * (age - 72.0) + sum(w * genes[g] for g, w in _OS_LOG_HR.items())
    os_months, os_event = _draw_survival(rng, category, log_hr, intercepts)
    aml = _draw_aml(rng, category, genes, intercepts)
    return pd.DataFrame({
        "site": site, "age": age, "sex": sex, **labs, "cyto_risk": cyto_labels,
        **{g: genes[g].astype(float) for g in MDS_GENES},
        "os_months": os_months, "os_event": os_event, "aml_progression": aml,
    })


def _apply_registry_missingness(rng: np.random.Generator, frame: pd.DataFrame, sites: _Sites) -> None:
    """Blank what registries lack, in place: genes off a site's panel, failed karyotypes, a few blood counts."""
    site = frame["site"].to_numpy()
    for gene in MDS_GENES:
        untested = _PANEL_ORDER.index(gene) >= sites.panel_size[site]
        frame.loc[untested, gene] = np.nan
    failed = rng.random(len(frame)) < sites.karyotype_failure[site]
    frame.loc[failed, "cyto_risk"] = None
    for column in ("hb", "plt", "anc"):
        frame.loc[rng.random(len(frame)) < sites.lab_missing[site], column] = np.nan


def _patient_ids(site: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """IDs like "S0-000123": the site and the patient's index within the site, unique across the cohort."""
    within = np.arange(len(site)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.char.add(np.char.add("S", site.astype(str)), np.char.add("-", np.char.zfill(within.astype(str), 6)))


def simulate_mds(n_patients: int = 4427, n_sites: int = 3, seed: int = 0) -> pd.DataFrame:
    """Simulate a multi-site MDS cohort (see the module docstring for the model and its sources).

    Rows are ordered by site. The same arguments always give the same frame.

    Columns: patient_id, site, age, sex, hb, plt, anc, bm_blasts, cyto_risk, ipssr_score, ipssr_category, the
    20 genes of `MDS_GENES` (0.0/1.0, NaN when off the site's panel), os_months, os_event, aml_progression.
    """
    if n_sites < 1:
        raise ValueError(f"n_sites must be at least 1, got {n_sites}")
    if n_patients < n_sites:
        raise ValueError(
            f"n_patients ({n_patients}) must be at least n_sites ({n_sites}) so that every site has a patient"
        )
    sites = _site_profiles(n_patients, n_sites)
    rng = np.random.default_rng(seed)
    frame = _simulate_complete(rng, sites, _reference_intercepts())
    _apply_registry_missingness(rng, frame, sites)
    score = ipssr_score(frame["cyto_risk"], frame["bm_blasts"], frame["hb"], frame["plt"], frame["anc"])
    frame.insert(0, "patient_id", _patient_ids(frame["site"].to_numpy(), sites.sizes))
    frame.insert(frame.columns.get_loc("cyto_risk") + 1, "ipssr_score", score)
    frame.insert(frame.columns.get_loc("ipssr_score") + 1, "ipssr_category", ipssr_category(score))
    return frame


def export_mds_csv(path: str | PathLike, n_patients: int = 4427, n_sites: int = 3, seed: int = 0) -> None:
    """Write `simulate_mds(n_patients, n_sites, seed)` as CSV (no index), for tools that read files per site."""
    simulate_mds(n_patients, n_sites, seed).to_csv(path, index=False)
