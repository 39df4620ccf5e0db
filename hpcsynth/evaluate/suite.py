"""The whole evaluation of one synthetic table: the registered parts, run in order, each adding its scores.

`evaluate` is collective: under MPI every rank passes the same synthetic table with its own site's training and
held-out rows, and only counts and scores cross sites, each score as `hpcsynth.evaluate.metrics` declares it
(exact from counts, or site-weighted). In one process it takes every site's rows and gives the pooled figures.

A part is a function of a `Context` registered with `@part(<metric names>)`; it runs when the columns its
metrics need are known (`EvalSpec`, whose defaults come from the cohort's definition, else from the schema). A
`local` part returns this site's values and the suite weighs them across sites as the metrics declare.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hpcsynth.comm import Communicator
from hpcsynth.data.cohorts import Cohort
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform
from hpcsynth.evaluate import attacks, composite
from hpcsynth.evaluate.anonymeter_risks import anonymeter_risks
from hpcsynth.evaluate.detection import detection, top_features
from hpcsynth.evaluate.diversity import alpha_beta_authenticity, category_coverage
from hpcsynth.evaluate.domias import domias_auroc
from hpcsynth.evaluate.fairness import FairnessTable, fairness
from hpcsynth.evaluate.fidelity import column_scores, wasserstein
from hpcsynth.evaluate.genomics import GenomicComparison, compare_genomics, pooled_real_genomics
from hpcsynth.evaluate.marginals import Marginal, marginals
from hpcsynth.evaluate.metrics import METRICS, Direction, Pooling, Role, directions, metric
from hpcsynth.evaluate.pairs import PairTrends, pair_trends, pooled_real_pairs
from hpcsynth.evaluate.pooling import summed, weighted_mean
from hpcsynth.evaluate.privacy import privacy_features
from hpcsynth.evaluate.survival import (
    CoxComparison,
    KMComparison,
    c_index,
    cause_counts,
    compare_incidence,
    compare_km,
    constraint_violations,
    cox_coefficients,
    horizons,
    km_counts,
    pooled_real_cox,
    td_auroc,
)
from hpcsynth.evaluate.utility import compare_fits, fit, fit_predict, fit_scores, predict, test_matrix
from hpcsynth.kernels.thread_pools import thread_pools


@dataclass
class EvalSpec:
    """Which columns each part of the evaluation uses (None or empty: the parts that need it are skipped).

    Parameters
    ----------
    time, event : str or None
        The survival time and event columns.
    risk_group : str or None
        The column whose levels get their own Kaplan-Meier curves.
    causes : list of float
        A competing-risk event's cause codes (every level but 0, censoring), when it has at least two: their
        cumulative incidence curves are compared (`cif_max_gap`).
    genes : list of str
        Mutation flags for the genomic scores (at least two).
    cox : list of str
        Covariates of the Cox comparison and the C-index.
    target : str or None
        The outcome of the utility classifiers (TSTR/TRTR).
    sensitive : list of str
        The attribute-inference target (the first one is attacked).
    quasi : list of str, or "all"
        What the attacker knows, for k-anonymity, l-diversity and the homogeneity attack. "all" (or ["all"], as
        `hpcsynth evaluate --quasi all` gives it): every attribute is a potential quasi-identifier; it is stored
        as `all_quasi` with `quasi` left empty.
    sex, age : str or None
        The columns that define the fairness subgroups.
    seed : int
        Seed of the classifiers.
    time_unit : {"days", "months", "years"} or None
        The time column's unit: the time-dependent AUROC is read at 1, 3 and 5 years (None: at the quartiles of
        the event times).
    outcome_columns : list of str
        Columns recorded only after the outcome, left out of the utility classifiers' features (with them, TRTR
        on flchain reads death off its cause and scores 1.000).
    all_quasi : bool
        Every attribute but the sensitive one may be a quasi-identifier: the anonymity scores are the worst over
        the `quasi_combinations` most identifying combinations of up to `max_quasi` attributes
        (`hpcsynth.evaluate.attacks.worst_anonymity`). Cleared by a list of columns in `quasi`.
    max_quasi : int
        The most attributes in one combination tried in the all-attribute mode.
    quasi_combinations : int
        The most combinations tried in the all-attribute mode (ranked by the classes they split the release into).
    n_attacks : int
        The training rows (and held-out rows) each of Anonymeter's attacks targets per site: more narrows the
        confidence intervals and costs time.
    """

    time: str | None = None
    event: str | None = None
    risk_group: str | None = None
    causes: list[float] = field(default_factory=list)
    genes: list[str] = field(default_factory=list)
    cox: list[str] = field(default_factory=list)
    target: str | None = None
    sensitive: list[str] = field(default_factory=list)
    quasi: list[str] | str = field(default_factory=list)
    sex: str | None = None
    age: str | None = None
    seed: int = 0
    time_unit: str | None = None
    outcome_columns: list[str] = field(default_factory=list)
    n_attacks: int = 500
    all_quasi: bool = False
    max_quasi: int = 3
    quasi_combinations: int = 50

    def __post_init__(self) -> None:
        if self.quasi == "all" or list(self.quasi) == ["all"]:
            self.quasi, self.all_quasi = [], True
        elif self.quasi:
            self.all_quasi = False

    @classmethod
    def default(cls, transformer: TableTransformer, cohort: Cohort | None = None, seed: int = 0) -> EvalSpec:
        """The columns a named cohort declares, else the schema's: binary features named like gene symbols, the
        first five numeric features for Cox, the event as sensitive column, age and sex as quasi-identifiers."""
        columns = transformer.columns

        def declared(names: tuple[str, ...]) -> list[str]:
            return [c for c in names if c in columns]

        binary = [s.name for s in transformer.schema_ if s.kind == "binary" and s.role == "feature"]
        numeric_valued = [s.name for s, t in zip(transformer.schema_, transformer.transforms_) if s.role == "feature"
                          and (not isinstance(t, CategoricalTransform) or t.numeric_)]
        categorical = [s.name for s in transformer.schema_ if s.kind in ("binary", "categorical")]
        genes = declared(cohort.genes) if cohort and cohort.genes else \
            [c for c in binary if re.fullmatch(r"[A-Z][A-Z0-9]{1,9}", c)]
        cox = declared(cohort.cox_covariates) if cohort else []
        cox = cox if len(cox) >= 3 else numeric_valued[:5]
        sensitive = (declared(cohort.sensitive) if cohort else []) or [c for c in [transformer.event] if c]
        sex = next((c for c in columns if c.lower() in ("sex", "gender") and c in categorical), None)
        age = next((c for c in columns if c.lower() == "age" and c not in categorical), None)
        quasi = (declared(cohort.quasi_identifiers) if cohort else []) or [c for c in (age, sex) if c] or \
            [c for c in columns if c not in sensitive][:2]
        risk_group = cohort.risk_groups if cohort and cohort.risk_groups in columns else None
        return cls(transformer.time, transformer.event, risk_group, _causes(transformer), genes,
                   cox if transformer.time else [], transformer.target or transformer.event, sensitive, quasi, sex,
                   age, seed, cohort.time_unit if cohort else None,
                   declared(cohort.outcome_columns) if cohort else [])

    def roles(self, n_sites: int) -> set[Role]:
        """The roles (`hpcsynth.evaluate.metrics.Role`) this spec can serve."""
        known = {"time": self.time, "event": self.event, "risk_group": self.risk_group, "causes": self.causes,
                 "genes": len(self.genes) >= 2, "cox": self.cox, "target": self.target,
                 "sensitive": self.sensitive, "quasi": self.quasi or self.all_quasi,
                 "subgroups": self.sex or self.age or n_sites > 1}
        return {role for role, value in known.items() if value}


def _causes(transformer: TableTransformer) -> list[float]:
    """The cause codes of a competing-risk event (a numeric event with two or more levels besides 0), else []."""
    if transformer.event is None:
        return []
    event = transformer.transform_of(transformer.event)
    if not isinstance(event, CategoricalTransform) or not event.numeric_:
        return []
    causes = [float(v) for v in event.labels_ if float(v) != 0.0]
    return causes if len(causes) >= 2 else []


@dataclass
class Evaluation:
    """Scores (in the registry's order), notes (worst subgroups) and the parts the report draws.

    Parameters
    ----------
    scores : dict
        Every score, keyed by its name in `hpcsynth.evaluate.metrics.METRICS`.
    notes : dict
        Names that go with a score, e.g. the worst subgroup.
    shapes : dict
        The shape score of every column.
    pairs : PairTrends or None
        Pair scores and correlation matrices.
    km, cox, genomics, fairness
        The survival, genomic and subgroup comparisons (None when skipped).
    distances : list
        Every site's distances (`hpcsynth.evaluate.attacks.Distances`), on rank 0.
    marginals : list of Marginal
        Real and synthetic histograms of every column.
    release : str
        What was scored: the consortium's one generator, or each site's own (`hpcsynth.evaluate.judge`).
    sites : list of dict
        With a release per site: each site's scores (`scores` then holds their mean).
    worst : dict
        With a release per site: every score at its worst site.
    own_site : list of dict
        When asked for: each site's release scored against that site's own held-out rows only.
    detection_features : dict
        The columns that give the synthetic rows away most, with their importance (in AUROC points).
    """

    scores: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, float] = field(default_factory=dict)
    pairs: PairTrends | None = None
    km: KMComparison | None = None
    cox: CoxComparison | None = None
    genomics: GenomicComparison | None = None
    fairness: FairnessTable | None = None
    distances: list = field(default_factory=list)
    marginals: list[Marginal] = field(default_factory=list)
    release: str = "consortium"
    sites: list[dict[str, float]] = field(default_factory=list)
    worst: dict[str, float] = field(default_factory=dict)
    own_site: list[dict[str, float]] = field(default_factory=list)
    detection_features: dict[str, float] = field(default_factory=dict)

    @property
    def directions(self) -> dict[str, Direction]:
        return directions(self.scores)

    def curves(self) -> dict[str, np.ndarray]:
        """The report's curves as plain arrays, for the run file's `/evaluation/curves` (paths as keys)."""
        out = {}
        if self.pairs is not None:
            p = self.pairs
            out.update({"pairs/columns": np.array(p.columns, dtype="S"), "pairs/real_corr": p.real_corr,
                        "pairs/synthetic_corr": p.synthetic_corr})
        if self.km is not None:
            out["km/grid"] = self.km.grid
            for group in self.km.real:
                name = str(group).replace("/", "_")  # a level name must not open an HDF5 subgroup
                out[f"km/real/{name}"], out[f"km/synthetic/{name}"] = self.km.real[group], self.km.synthetic[group]
        if self.genomics is not None:
            g = self.genomics
            out.update({"genes/names": np.array(g.genes, dtype="S"), "genes/real_freq": g.real_freq,
                        "genes/synthetic_freq": g.synthetic_freq, "genes/real_log_or": g.real_log_or,
                        "genes/synthetic_log_or": g.synthetic_log_or})
        return out


@dataclass
class Context:
    """What a part reads, and what earlier parts left for later ones.

    Parameters
    ----------
    synthetic, train, holdout : DataFrame
        The synthetic table and this rank's training and held-out rows.
    transformer : TableTransformer
        The shared (scoring) transform.
    comm : Communicator
        The sites; every part is collective.
    spec : EvalSpec
        The columns each part uses.
    site : ndarray
        The site of every held-out row.
    n_sites : int
        The number of sites.
    result : Evaluation
        Filled as the parts run: scores so far, and the comparisons the report draws.
    predictions : tuple of ndarray or None
        The TSTR model's binary predictions (rows scored, labels, scores), for the fairness part.
    whole : bool
        Every part runs (not a per-round selection): the parts add what only the report needs.
    memo : dict
        What does not depend on the synthetic table (fits on the real rows), kept across the evaluations of one
        judge (`once`).
    """

    synthetic: pd.DataFrame
    train: pd.DataFrame
    holdout: pd.DataFrame
    transformer: TableTransformer
    comm: Communicator
    spec: EvalSpec
    site: np.ndarray
    n_sites: int
    result: Evaluation = field(default_factory=Evaluation)
    predictions: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    whole: bool = True
    memo: dict = field(default_factory=dict)

    @property
    def scores(self) -> dict[str, float]:
        return self.result.scores

    def on_one_site(self, compute: Callable[[], Any]) -> Any:
        """What depends on the synthetic table alone (the same on every site), computed by one site and sent to
        the others (collective): the sites do not repeat the same fit. The sites take turns (the memo counts
        them, and every site asks in the same order), so the fits of one evaluation, and of the releases scored
        one after another, do not all wait on the same site."""
        turn = self.memo.get("on_one_site", 0)
        self.memo["on_one_site"] = turn + 1
        owner = (self.comm.size - 1 - turn) % self.comm.size
        return self.comm.bcast(compute() if self.comm.rank == owner else None, root=owner)

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()` the first time `key` is asked for with this memo (collective when `compute` is: every
        site asks for the same keys in the same order)."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


@dataclass(frozen=True)
class Part:
    """A registered function and the metrics it computes (made by `part`).

    Parameters
    ----------
    compute : callable
        Context -> {metric name: value}.
    metrics : tuple of str
        The declared metrics it returns (no others).
    needs : frozenset of str
        The roles it runs with: those every one of its metrics needs.
    local : bool
        It returns this site's values, pooled by the suite as each metric's pooling declares.
    uses : frozenset of str
        The metrics of earlier parts it reads (a composite's components), run first whenever it runs.
    """

    compute: Callable[[Context], dict[str, float]]
    metrics: tuple[str, ...]
    needs: frozenset[str]
    local: bool
    uses: frozenset[str] = frozenset()


PARTS: list[Part] = []
TOP_FEATURES = 5  # the columns detection names in a whole evaluation
_WEIGHTS = {Pooling.HOLDOUT: lambda ctx: len(ctx.holdout), Pooling.TRAIN: lambda ctx: len(ctx.train)}


def part(*names: str, local: bool = False,
         uses: tuple[str, ...] = ()) -> Callable[[Callable[[Context], dict[str, float]]], Callable]:
    """Register the decorated function as computing the declared metrics `names`, in evaluation order. It runs
    when the roles every one of its metrics needs are known. `local`: it returns this site's values, and each is
    averaged over sites with the weight its pooling declares (held-out or training rows). `uses`: the metrics of
    earlier parts it reads."""
    declared = [metric(name) for name in names]
    if local and any(m.pooling not in _WEIGHTS for m in declared):
        raise ValueError(f"a local part returns site-weighted metrics only: {names}")

    def register(compute: Callable[[Context], dict[str, float]]) -> Callable[[Context], dict[str, float]]:
        needs = frozenset.intersection(*(frozenset(m.needs) for m in declared))
        PARTS.append(Part(compute, names, needs, local, frozenset(metric(u).name for u in uses)))
        return compute

    return register


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as floats (NaN where a value is missing or not a number)."""
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _mean_of(values: dict, keep: Callable) -> float:
    chosen = [v for k, v in values.items() if keep(k) and np.isfinite(v)]
    return float(np.mean(chosen)) if chosen else float("nan")


@part("column_shapes", "column_pair_trends", "quality")
def _shapes_and_pairs(ctx: Context) -> dict[str, float]:
    r = ctx.result
    r.shapes = column_scores(ctx.synthetic, ctx.holdout, ctx.transformer, ctx.comm)
    real = ctx.once("pairs", lambda: pooled_real_pairs(ctx.holdout, ctx.transformer, ctx.comm))
    r.pairs = ctx.on_one_site(lambda: pair_trends(ctx.synthetic, ctx.holdout, ctx.transformer, ctx.comm, real=real))
    if ctx.whole:  # the report's histograms
        r.marginals = marginals(ctx.synthetic, ctx.holdout, ctx.transformer, ctx.comm)
    shapes = float(np.mean(list(r.shapes.values())))
    return {"column_shapes": shapes, "column_pair_trends": r.pairs.score, "quality": (shapes + r.pairs.score) / 2}


@part("category_coverage", "rare_category_coverage")
def _coverage(ctx: Context) -> dict[str, float]:
    return category_coverage(ctx.synthetic, ctx.holdout, ctx.transformer, ctx.comm)


@part("wasserstein", "detection_auroc", local=True)
def _distinguishability(ctx: Context) -> dict[str, float]:
    """Wasserstein distance and detection AUROC; in a whole evaluation also the columns that give the synthetic
    rows away (permutation importances, weighted by held-out rows over sites)."""
    found = detection(ctx.synthetic, ctx.holdout, ctx.transformer, ctx.spec.seed, importance=ctx.whole,
                      memo=ctx.once("detection", dict))
    if ctx.whole:
        pooled = weighted_mean(found.importance, float(len(ctx.holdout)), ctx.comm)
        ctx.result.detection_features = dict(top_features(pooled, TOP_FEATURES))
        ctx.result.notes["detection_top_features"] = ", ".join(f"{c} ({v:.3f})"
                                                               for c, v in ctx.result.detection_features.items())
    return {"wasserstein": wasserstein(ctx.synthetic, ctx.holdout, ctx.transformer), "detection_auroc": found.auroc}


@part("alpha_precision", "beta_recall", "authenticity", local=True)
def _diversity(ctx: Context) -> dict[str, float]:
    return alpha_beta_authenticity(privacy_features(ctx.train, ctx.transformer),
                                   privacy_features(ctx.synthetic, ctx.transformer))


@part("membership_auroc", local=True)
def _membership(ctx: Context) -> dict[str, float]:
    return {"membership_auroc": attacks.membership_auroc(ctx.synthetic, ctx.train, ctx.holdout, ctx.transformer,
                                                         ctx.spec.seed)}


@part("domias_auroc", local=True)
def _domias(ctx: Context) -> dict[str, float]:
    return {"domias_auroc": domias_auroc(ctx.synthetic, ctx.train, ctx.holdout, ctx.transformer, ctx.spec.seed)}


@part("attribute_inference_accuracy", "attribute_inference_gain", local=True)
def _attribute_inference(ctx: Context) -> dict[str, float]:
    inference = attacks.attribute_inference(ctx.synthetic, ctx.train, ctx.holdout, ctx.transformer,
                                            ctx.spec.sensitive[0])
    return {"attribute_inference_accuracy": inference["accuracy"], "attribute_inference_gain": inference["gain"]}


@part("k_anonymity", "l_diversity", "homogeneity_risk", local=True)
def _anonymity(ctx: Context) -> dict[str, float]:
    spec = ctx.spec
    if spec.all_quasi:
        return attacks.worst_anonymity(ctx.synthetic, ctx.train, ctx.transformer, spec.sensitive[0], spec.max_quasi,
                                       spec.quasi_combinations)
    return attacks.anonymity(ctx.synthetic, ctx.train, ctx.transformer, spec.quasi, spec.sensitive[0])


@part(*(f"{risk}{bound}" for risk in ("singling_out_risk", "linkability_risk", "inference_risk")
        for bound in ("", "_ci_high")), local=True)
def _anonymeter(ctx: Context) -> dict[str, float]:
    """Anonymeter's singling-out, linkability and inference risks on this site's training rows, its held-out
    rows the control set (the inference risk only with a sensitive column)."""
    spec = ctx.spec
    return anonymeter_risks(ctx.synthetic, ctx.train, ctx.holdout, ctx.transformer, spec.sensitive, spec.n_attacks,
                            spec.seed)


@part(*(f"{way}_{score}" for way in ("tstr", "trtr") for score in ("auroc", "balanced_accuracy", "g_mean")),
      "tstr_trtr_auroc_ratio", local=True)
def _utility(ctx: Context) -> dict[str, float]:
    """TSTR against TRTR; keeps the TSTR model's binary predictions for the fairness part."""
    target, t = ctx.spec.target, ctx.transformer
    features = [c for c in t.columns if c not in (target, ctx.spec.time, *ctx.spec.outcome_columns)]
    model = ctx.on_one_site(lambda: fit(ctx.synthetic, t, target, features, ctx.spec.seed))
    encoded = ctx.once("tstr_test", lambda: test_matrix(ctx.holdout, t, target, features))
    fitted = predict(model, ctx.holdout, t, target, features, encoded)
    if fitted is not None and fitted[2].size == 2:
        ctx.predictions = (encoded[0], fitted[0] == fitted[2][1], fitted[1][:, 1])
    trtr = ctx.once("trtr", lambda: fit_predict(ctx.train, ctx.holdout, t, target, features, ctx.spec.seed))
    return compare_fits(fitted, trtr, ctx.once("trtr_scores", lambda: fit_scores(trtr)))


@part("dcr_synthetic_p5", "dcr_holdout_p5", "dcr_ratio", "dcr_closer_than_holdout_median", "exact_match_rate",
      "nndr_p5", "nndr_median")
def _distances(ctx: Context) -> dict[str, float]:
    real = ctx.once("distances", lambda: attacks.real_distances(ctx.train, ctx.holdout, ctx.transformer))
    features = ctx.on_one_site(lambda: privacy_features(ctx.synthetic, ctx.transformer))
    parts = ctx.comm.gather(attacks.site_distances(ctx.synthetic, ctx.train, ctx.holdout, ctx.transformer, real,
                                                   features))
    ctx.result.distances = parts or []
    return ctx.comm.bcast(attacks.distance_scores(parts) if parts is not None else None)


@part("km_max_gap", "km_logrank_p", "km_group_max_gap", "km_group_mean_gap")
def _kaplan_meier(ctx: Context) -> dict[str, float]:
    """Overall and per risk group; a group's gap is NaN where it has no rows."""
    spec, t = ctx.spec, ctx.transformer
    levels = list(t.transform_of(spec.risk_group).labels_) if spec.risk_group else []
    t_max = t.transform_of(spec.time).max_
    real = ctx.once("km", lambda: summed(km_counts(ctx.holdout, spec.time, spec.event, t_max, spec.risk_group, levels),
                                         ctx.comm))
    km = compare_km(ctx.synthetic, ctx.holdout, spec.time, spec.event, t_max, ctx.comm, spec.risk_group, levels, real)
    ctx.result.km = km
    if km.worst_group is not None:
        ctx.result.notes["km_worst_group"] = km.worst_group
    gaps = [km.gaps[g] for g in levels if np.isfinite(km.gaps[g])]
    return {"km_max_gap": km.gaps["all"], "km_logrank_p": km.logrank_p["all"],
            "km_group_max_gap": max(gaps) if gaps else float("nan"),
            "km_group_mean_gap": float(np.mean(gaps)) if gaps else float("nan")}


@part("cif_max_gap")
def _cumulative_incidence(ctx: Context) -> dict[str, float]:
    """The largest gap over the causes of a competing-risk event between real (pooled held-out rows, exact from
    summed per-cause counts) and synthetic cumulative incidence; each cause's gap goes to the notes."""
    spec = ctx.spec
    t_max = ctx.transformer.transform_of(spec.time).max_
    real = ctx.once("cif", lambda: summed(cause_counts(ctx.holdout, spec.time, spec.event, spec.causes, t_max),
                                          ctx.comm))
    gaps = compare_incidence(ctx.synthetic, real, spec.time, spec.event, spec.causes, t_max)
    ctx.result.notes["cif_gap_by_cause"] = ", ".join(f"{cause}: {gap:.4f}" for cause, gap in gaps.items())
    return {"cif_max_gap": max(gaps.values())}


@part("cox_hr_in_ci", "cox_log_hr_mae")
def _cox(ctx: Context) -> dict[str, float]:
    spec = ctx.spec
    real = ctx.once("cox", lambda: pooled_real_cox(ctx.holdout, spec.cox, spec.time, spec.event, ctx.comm))
    synthetic = ctx.on_one_site(lambda: cox_coefficients(ctx.synthetic, spec.cox, spec.time, spec.event)[0])
    ctx.result.cox = CoxComparison(list(spec.cox), *real, synthetic)
    return ctx.result.cox.scores()


@part("cindex_tstr", "cindex_trtr", local=True)
def _c_index(ctx: Context) -> dict[str, float]:
    spec = ctx.spec
    return {"cindex_tstr": c_index(ctx.synthetic, ctx.holdout, spec.cox, spec.time, spec.event),
            "cindex_trtr": c_index(ctx.train, ctx.holdout, spec.cox, spec.time, spec.event)}


@part("td_auroc_tstr", "td_auroc_trtr", local=True)
def _td_auroc(ctx: Context) -> dict[str, float]:
    """Time-dependent AUROC of a Cox model trained on synthetic / real training rows, on this site's held-out rows
    (censoring from its training rows), the mean over the horizons inside follow-up."""
    spec = ctx.spec
    time, event = (_numbers(ctx.train, c) for c in (spec.time, spec.event))
    at = horizons(spec.time_unit, time[event > 0.5])
    ctx.result.notes["td_auroc_horizons"] = ", ".join(f"{h:g}" for h in at) + f" {spec.time_unit or '(quartiles)'}"

    def mean(train: pd.DataFrame) -> float:
        values = td_auroc(train, ctx.train, ctx.holdout, spec.cox, spec.time, spec.event, at)
        return _mean_of(dict(enumerate(values)), lambda _: True)

    return {"td_auroc_tstr": mean(ctx.synthetic), "td_auroc_trtr": ctx.once("td_auroc_trtr", lambda: mean(ctx.train))}


@part("survival_constraint_violations")
def _survival_constraints(ctx: Context) -> dict[str, float]:
    """Synthetic rows with a time that is not positive or after the maximum follow-up (the scoring transform's
    maximum, a public bound) or an event outside its declared levels; the same on every site."""
    spec, t = ctx.spec, ctx.transformer
    event = t.transform_of(spec.event)
    declared = event.codes(ctx.synthetic[spec.event]) != len(event.labels_)
    found = constraint_violations(_numbers(ctx.synthetic, spec.time), declared, t.transform_of(spec.time).max_)
    ctx.result.notes["survival_constraint_violations"] = ", ".join(f"{k}: {v}" for k, v in found.items() if k != "rows")
    return {"survival_constraint_violations": float(found["rows"])}


@part("gene_frequency_similarity", "gene_frequency_mae", "co_mutation_agreement", "co_mutation_log_or_mae")
def _genomics(ctx: Context) -> dict[str, float]:
    real = ctx.once("genomics", lambda: pooled_real_genomics(ctx.holdout, ctx.spec.genes, ctx.comm))
    ctx.result.genomics = ctx.on_one_site(lambda: compare_genomics(ctx.synthetic, ctx.holdout, ctx.spec.genes,
                                                                   ctx.comm, real))
    return ctx.result.genomics.scores()


@part("fairness_fidelity_min", "fairness_fidelity_gap", "fairness_utility_min", "fairness_utility_gap",
      uses=("column_shapes", "tstr_auroc"))
def _fairness(ctx: Context) -> dict[str, float]:
    ctx.result.fairness = fairness(ctx.synthetic, ctx.holdout, ctx.transformer, ctx.comm, ctx.spec.sex,
                                   ctx.spec.age, ctx.site, ctx.n_sites, ctx.predictions)
    scores, notes = ctx.result.fairness.scores()
    ctx.result.notes.update(notes)
    return scores


@part("csf", uses=("column_shapes", "column_pair_trends", "km_max_gap", "km_group_mean_gap", "cox_hr_in_ci"))
def _csf(ctx: Context) -> dict[str, float]:
    genes, s = set(ctx.spec.genes), ctx.scores
    return {"csf": composite.csf(_mean_of(ctx.result.shapes, lambda c: c not in genes),
                                 _mean_of(ctx.result.pairs.scores, lambda p: p[0] not in genes and p[1] not in genes),
                                 s.get("km_max_gap", np.nan), s.get("km_group_mean_gap", np.nan),
                                 s.get("cox_hr_in_ci", np.nan))}


@part("gsf", uses=("column_pair_trends", "gene_frequency_similarity", "co_mutation_agreement"))
def _gsf(ctx: Context) -> dict[str, float]:
    genes, s = set(ctx.spec.genes), ctx.scores
    return {"gsf": composite.gsf(s["gene_frequency_similarity"],
                                 _mean_of(ctx.result.pairs.scores, lambda p: p[0] in genes and p[1] in genes),
                                 s["co_mutation_agreement"])}


def _pooled(ctx: Context, local: dict[str, float]) -> dict[str, float]:
    """This site's values averaged over sites, each with the weight its metric's pooling declares."""
    out = {}
    for pooling, weight in _WEIGHTS.items():
        mine = {k: v for k, v in local.items() if METRICS[k].pooling is pooling}
        if mine:
            out.update(weighted_mean(mine, float(weight(ctx)), ctx.comm))
    return out


def selected(metrics: Collection[str] | None) -> list[Part]:
    """The parts that compute `metrics` (None: all), with the parts whose metrics those read, in order."""
    if metrics is None:
        return list(PARTS)
    wanted = {metric(name).name for name in metrics}
    while True:
        grown = wanted | {u for p in PARTS if wanted & set(p.metrics) for u in p.uses}
        if grown == wanted:
            return [p for p in PARTS if wanted & set(p.metrics)]
        wanted = grown


def evaluate(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, transformer: TableTransformer,
             comm: Communicator, spec: EvalSpec | None = None, site: np.ndarray | None = None,
             n_sites: int = 1, metrics: Collection[str] | None = None, memo: dict | None = None) -> Evaluation:
    """Every score of `synthetic` against the held-out rows (collective), or only `metrics` (and what they read).
    `site` labels each real row's site (default: this rank) for the per-site fairness rows; `n_sites` is the
    number of sites; `memo` keeps the fits on real rows for the next evaluation against the same rows.

    The classifiers run on one OpenMP thread: with several ranks per node (or a busy node), a default of a
    thread per core made each small fit a hundred times slower from threads waiting on each other."""
    spec = spec or EvalSpec.default(transformer)
    site = np.full(len(holdout), comm.rank) if site is None else site
    ctx = Context(synthetic, train, holdout, transformer, comm, spec, site, n_sites, whole=metrics is None,
                  memo=memo if memo is not None else {})
    roles = spec.roles(n_sites)
    import lightgbm  # noqa: F401  (loads the OpenMP runtimes that the fits use before they are capped)
    import sklearn.ensemble  # noqa: F401

    with thread_pools("openmp").limit(limits=1):
        for p in selected(metrics):
            if not p.needs <= roles:
                continue
            scores = p.compute(ctx)
            unknown = set(scores) - set(p.metrics)
            if unknown:
                raise ValueError(f"{p.compute.__name__} returned undeclared scores {sorted(unknown)}")
            ctx.scores.update(_pooled(ctx, scores) if p.local else scores)
    ctx.result.scores = {k: ctx.scores[k] for k in METRICS if k in ctx.scores}
    return ctx.result
