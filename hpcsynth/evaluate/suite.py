"""The whole evaluation of one synthetic table: every score, its direction, and what the report draws.

`evaluate` is collective: under MPI every rank passes the same synthetic table with its own site's training
and held-out rows, and only counts and scores cross sites (exact where the metric is a function of counts,
weighted by site size where it needs rows; see `hpcsynth.evaluate.pooling` and each module). In one process it
takes every site's rows at once and every figure is the pooled one.

`EvalSpec.default` picks the columns each part needs from the schema: the survival time and event, the risk
groups (IPSS-R category for MDS), the genes (the MDS driver genes, else binary columns named like gene symbols),
the key Cox covariates, the utility target (the declared target, else the event), the sensitive columns and
the quasi-identifiers of the privacy attacks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform
from hpcsynth.evaluate import attacks, composite
from hpcsynth.evaluate.detection import detection_auroc
from hpcsynth.evaluate.diversity import alpha_beta_authenticity, category_coverage
from hpcsynth.evaluate.fairness import FairnessTable, fairness
from hpcsynth.evaluate.fidelity import column_scores
from hpcsynth.evaluate.genomics import GenomicComparison, compare_genomics
from hpcsynth.evaluate.marginals import Marginal, marginals
from hpcsynth.evaluate.pairs import PairTrends, pair_trends
from hpcsynth.evaluate.pooling import weighted_mean
from hpcsynth.evaluate.privacy import privacy_features
from hpcsynth.evaluate.survival import CoxComparison, KMComparison, c_index_scores, compare_cox, compare_km
from hpcsynth.evaluate.utility import compare_fits, fit_predict
from hpcsynth.comm import Communicator

MDS_COX = ("age", "ipssr_score", "SF3B1", "TP53", "ASXL1", "RUNX1")
MDS_SENSITIVE = ("TP53",)
RISK_GROUPS = ("ipssr_category",)

DIRECTIONS = {
    "fidelity": "higher", "column_shapes": "higher", "column_pair_trends": "higher", "quality": "higher",
    "wasserstein": "lower", "detection_auroc": "lower", "alpha_precision": "higher", "beta_recall": "higher",
    "authenticity": "higher", "category_coverage": "higher", "rare_category_coverage": "higher",
    "km_max_gap": "lower", "km_group_max_gap": "lower", "km_group_mean_gap": "lower", "km_logrank_p": "higher",
    "cox_hr_in_ci": "higher", "cox_log_hr_mae": "lower", "cindex_tstr": "higher", "cindex_trtr": "higher",
    "gene_frequency_similarity": "higher", "gene_frequency_mae": "lower", "co_mutation_agreement": "higher",
    "co_mutation_log_or_mae": "lower", "csf": "higher", "gsf": "higher",
    "tstr_auroc": "higher", "tstr_balanced_accuracy": "higher", "tstr_g_mean": "higher",
    "trtr_auroc": "higher", "trtr_balanced_accuracy": "higher", "trtr_g_mean": "higher",
    "tstr_trtr_auroc_ratio": "higher",
    "dcr_synthetic_p5": "higher", "dcr_holdout_p5": "higher", "dcr_ratio": "higher",
    "dcr_closer_than_holdout_median": "lower", "exact_match_rate": "lower", "nndr_p5": "higher",
    "nndr_median": "higher", "membership_auroc": "lower", "attribute_inference_accuracy": "lower",
    "attribute_inference_gain": "lower", "k_anonymity": "higher", "l_diversity": "higher",
    "homogeneity_risk": "lower", "fairness_fidelity_min": "higher", "fairness_fidelity_gap": "lower",
    "fairness_utility_min": "higher", "fairness_utility_gap": "lower", "wall_s": "lower",
}


@dataclass
class EvalSpec:
    """Which columns each part of the evaluation uses (None or empty: that part is skipped)."""

    time: str | None = None
    event: str | None = None
    risk_group: str | None = None
    genes: list[str] = field(default_factory=list)
    cox: list[str] = field(default_factory=list)
    target: str | None = None
    sensitive: list[str] = field(default_factory=list)
    quasi: list[str] = field(default_factory=list)
    sex: str | None = None
    age: str | None = None
    seed: int = 0

    @classmethod
    def default(cls, transformer: TableTransformer, seed: int = 0) -> "EvalSpec":
        columns = transformer.columns
        binary = [s.name for s in transformer.schema_ if s.kind == "binary" and s.role == "feature"]
        genes = [c for c in binary if re.fullmatch(r"[A-Z][A-Z0-9]{1,9}", c)]
        numeric_valued = [s.name for s, t in zip(transformer.schema_, transformer.transforms_) if s.role == "feature"
                          and (not isinstance(t, CategoricalTransform) or t.numeric_)]
        mds_cox = [c for c in MDS_COX if c in columns]
        cox = mds_cox if len(mds_cox) >= 3 else numeric_valued[:5]
        categorical = [s.name for s in transformer.schema_ if s.kind in ("binary", "categorical")]
        sensitive = [c for c in MDS_SENSITIVE if c in columns] or [c for c in [transformer.event] if c]
        sex = next((c for c in columns if c.lower() in ("sex", "gender") and c in categorical), None)
        age = next((c for c in columns if c.lower() == "age" and c not in categorical), None)
        quasi = [c for c in (age, sex) if c] or [c for c in columns if c not in sensitive][:2]
        return cls(transformer.time, transformer.event, next((c for c in RISK_GROUPS if c in columns), None),
                   genes, cox if transformer.time else [], transformer.target or transformer.event,
                   sensitive, quasi, sex, age, seed)


@dataclass
class Evaluation:
    """Scores (with directions), names (worst subgroups), and the parts the report draws."""

    scores: dict[str, float]
    notes: dict[str, str]
    shapes: dict[str, float]
    pairs: PairTrends
    km: KMComparison | None = None
    cox: CoxComparison | None = None
    genomics: GenomicComparison | None = None
    fairness: FairnessTable | None = None
    distances: list = field(default_factory=list)
    marginals: list[Marginal] = field(default_factory=list)

    @property
    def directions(self) -> dict[str, str]:
        return {k: DIRECTIONS.get(k, "higher") for k in self.scores}

    def curves(self) -> dict[str, np.ndarray]:
        """The report's curves as plain arrays, for the run file's `/evaluation/curves` (paths as keys)."""
        out = {"pairs/columns": np.array(self.pairs.columns, dtype="S"), "pairs/real_corr": self.pairs.real_corr,
               "pairs/synthetic_corr": self.pairs.synthetic_corr}
        if self.km is not None:
            out["km/grid"] = self.km.grid
            for group in self.km.real:
                name = str(group).replace("/", "_")  # a level name must not open an HDF5 subgroup
                out[f"km/real/{name}"], out[f"km/synthetic/{name}"] = self.km.real[group], self.km.synthetic[group]
        if self.genomics is not None:
            out.update({"genes/names": np.array(self.genomics.genes, dtype="S"),
                        "genes/real_freq": self.genomics.real_freq, "genes/synthetic_freq": self.genomics.synthetic_freq,
                        "genes/real_log_or": self.genomics.real_log_or,
                        "genes/synthetic_log_or": self.genomics.synthetic_log_or})
        return out


def _mean_of(values: dict, keep) -> float:
    chosen = [v for k, v in values.items() if keep(k) and np.isfinite(v)]
    return float(np.mean(chosen)) if chosen else float("nan")


def _wasserstein(synthetic: pd.DataFrame, holdout: pd.DataFrame, transformer: TableTransformer) -> float:
    """Mean over numeric columns of the 1-Wasserstein distance divided by the column's shared range."""
    from scipy.stats import wasserstein_distance

    out = []
    for t in transformer.transforms_:
        if isinstance(t, CategoricalTransform):
            continue
        a = pd.to_numeric(synthetic[t.spec.name], errors="coerce").dropna().to_numpy(dtype=np.float64)
        b = pd.to_numeric(holdout[t.spec.name], errors="coerce").dropna().to_numpy(dtype=np.float64)
        if a.size and b.size:
            out.append(wasserstein_distance(a, b) / max(t.max_ - t.min_, 1e-12))
    return float(np.mean(out)) if out else float("nan")


def _survival(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, transformer: TableTransformer,
              spec: EvalSpec, comm: Communicator, scores: dict[str, float]) -> tuple[KMComparison, CoxComparison | None]:
    """Kaplan-Meier (overall, per risk group), Cox and C-index parts; adds their scores to `scores`."""
    t_max = transformer.transform_of(spec.time).max_
    levels = list(transformer.transform_of(spec.risk_group).labels_) if spec.risk_group else []
    km = compare_km(synthetic, holdout, spec.time, spec.event, t_max, comm, spec.risk_group, levels)
    group_gaps = [km.gaps[g] for g in levels if np.isfinite(km.gaps[g])]
    scores.update({"km_max_gap": km.gaps["all"], "km_logrank_p": km.logrank_p["all"],
                   "km_group_max_gap": max(group_gaps) if group_gaps else float("nan"),
                   "km_group_mean_gap": float(np.mean(group_gaps)) if group_gaps else float("nan")})
    cox = None
    if spec.cox:
        cox = compare_cox(synthetic, holdout, spec.cox, spec.time, spec.event, comm)
        scores.update(cox.scores())
        scores.update(c_index_scores(synthetic, train, holdout, spec.cox, spec.time, spec.event, comm))
    return km, cox


def evaluate(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, transformer: TableTransformer,
             comm: Communicator, spec: EvalSpec | None = None, site: np.ndarray | None = None,
             n_sites: int = 1) -> Evaluation:
    """Every score of `synthetic` against the held-out rows (collective). `site` labels each real row's site
    (default: this rank) for the per-site fairness rows; `n_sites` is the number of sites.

    The classifiers run on one OpenMP thread: with several ranks per node (or a busy node), scikit-learn's
    default of a thread per core made each small fit a hundred times slower from threads waiting on each other."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        return _evaluate(synthetic, train, holdout, transformer, comm, spec, site, n_sites)


def _evaluate(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, transformer: TableTransformer,
             comm: Communicator, spec: EvalSpec | None = None, site: np.ndarray | None = None,
             n_sites: int = 1) -> Evaluation:
    spec = spec or EvalSpec.default(transformer)
    site = np.full(len(holdout), comm.rank) if site is None else site
    genes = set(spec.genes)
    shapes = column_scores(synthetic, holdout, transformer, comm)
    pairs = pair_trends(synthetic, holdout, transformer, comm)
    scores = {"column_shapes": float(np.mean(list(shapes.values()))), "column_pair_trends": pairs.score}
    scores["quality"] = (scores["column_shapes"] + scores["column_pair_trends"]) / 2
    scores.update(category_coverage(synthetic, holdout, transformer, comm))
    result = Evaluation(scores, {}, shapes, pairs, marginals=marginals(synthetic, holdout, transformer, comm))

    local = {"wasserstein": _wasserstein(synthetic, holdout, transformer),
             "detection_auroc": detection_auroc(synthetic, holdout, transformer, spec.seed)}
    on_train = alpha_beta_authenticity(privacy_features(train, transformer), privacy_features(synthetic, transformer))
    on_train["membership_auroc"] = attacks.membership_auroc(synthetic, train, holdout, transformer, spec.seed)
    for column in spec.sensitive[:1]:
        inference = attacks.attribute_inference(synthetic, train, holdout, transformer, column)
        on_train.update({"attribute_inference_accuracy": inference["accuracy"],
                         "attribute_inference_gain": inference["gain"]})
        if spec.quasi:
            on_train.update(attacks.anonymity(synthetic, train, transformer, spec.quasi, column))
    scores.update(weighted_mean(on_train, float(len(train)), comm))  # about training patients: their weight
    predictions = None
    if spec.target:
        features = [c for c in transformer.columns if c not in (spec.target, spec.time)]
        fitted = fit_predict(synthetic, holdout, transformer, spec.target, features, spec.seed)
        local.update(compare_fits(fitted, fit_predict(train, holdout, transformer, spec.target, features, spec.seed)))
        if fitted is not None and fitted[2].size == 2:
            missing = len(transformer.transform_of(spec.target).labels_)
            kept = transformer.transform_of(spec.target).codes(holdout[spec.target]) != missing
            predictions = (kept, fitted[0] == fitted[2][1], fitted[1][:, 1])
    scores.update(weighted_mean(local, float(len(holdout)), comm))

    parts = comm.gather(attacks.site_distances(synthetic, train, holdout, transformer))
    result.distances = parts or []
    scores.update(comm.bcast(attacks.distance_scores(parts) if parts is not None else None))

    if spec.time and spec.event:
        result.km, result.cox = _survival(synthetic, train, holdout, transformer, spec, comm, scores)
    if len(spec.genes) >= 2:
        result.genomics = compare_genomics(synthetic, holdout, spec.genes, comm)
        scores.update(result.genomics.scores())
    if spec.sex or spec.age or n_sites > 1:
        result.fairness = fairness(synthetic, holdout, transformer, comm, spec.sex, spec.age, site, n_sites, predictions)
        fair, notes = result.fairness.scores()
        scores.update(fair)
        result.notes.update(notes)
    if result.km is not None and result.km.worst_group is not None:
        result.notes["km_worst_group"] = result.km.worst_group

    def clinical(column: str) -> bool:
        return column not in genes

    scores["csf"] = composite.csf(_mean_of(shapes, clinical),
                                  _mean_of(pairs.scores, lambda p: clinical(p[0]) and clinical(p[1])),
                                  scores.get("km_max_gap", np.nan), scores.get("km_group_mean_gap", np.nan),
                                  scores.get("cox_hr_in_ci", np.nan))
    if result.genomics is not None:
        scores["gsf"] = composite.gsf(scores["gene_frequency_similarity"],
                                      _mean_of(pairs.scores, lambda p: p[0] in genes and p[1] in genes),
                                      scores["co_mutation_agreement"])
    return result
