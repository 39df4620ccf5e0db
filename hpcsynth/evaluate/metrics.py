"""The metric registry: every score's name, direction, the columns it needs and how sites combine it.

`METRICS` is the one table the suite, the HTML report, the summary of `hpcsynth evaluate`, the training job and
the benchmarks read; a score that is not declared here is refused. To add a metric: declare it below, then
compute it in a function that `hpcsynth.evaluate.suite` registers with `@part("your_metric", ...)`.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Literal

Direction = Literal["higher", "lower"]
Role = Literal["time", "event", "causes", "risk_group", "genes", "cox", "target", "sensitive", "quasi", "subgroups"]


class Pooling(str, Enum):
    """How per-site results become the consortium's figure (`hpcsynth.evaluate.pooling`); each value says it.

    COUNTS is exact (equal to the value on the pooled rows); HOLDOUT, TRAIN and INVERSE_VARIANCE are
    site-weighted; DISTANCES pools every site's distances on rank 0; MIXED combines exact and site-weighted
    parts; ROOT is rank 0's own measurement.
    """

    COUNTS = "exact: a function of counts summed over sites"
    HOLDOUT = "site-weighted: mean over sites weighted by held-out rows"
    TRAIN = "site-weighted: mean over sites weighted by training rows"
    INVERSE_VARIANCE = "site-weighted: per-site fits combined by inverse-variance meta-analysis"
    DISTANCES = "percentiles of every site's distances, gathered on rank 0"
    MIXED = "combines exact and site-weighted parts"
    ROOT = "measured on rank 0"


@dataclass(frozen=True)
class Metric:
    """One score as every table of the project shows it.

    Parameters
    ----------
    name : str
        The key in `Evaluation.scores` and in the run file's `/evaluation`.
    direction : {"higher", "lower"}
        Which values are better.
    pooling : Pooling
        How the sites' results combine: exact from merged counts, or site-weighted (needs rows).
    needs : tuple of Role
        The columns (roles of `EvalSpec`) the score needs; without one of them it is NaN or absent.
    headline : bool
        Shown in the strategy comparison (the summary table and the report's comparison plot).
    per_round : bool
        Computed every `evaluation.every` rounds of training and at the last one (a column of `/rounds`): the
        job's own table.
    """

    name: str
    direction: Direction
    pooling: Pooling
    needs: tuple[Role, ...] = ()
    headline: bool = False
    per_round: bool = False

    @property
    def exact(self) -> bool:
        """True when the federated value equals the value on the pooled rows."""
        return self.pooling is Pooling.COUNTS

    @property
    def sign(self) -> str:
        """"+" when higher is better, "-" when lower is, as the tables' legends write it."""
        return "+" if self.direction == "higher" else "-"


METRICS: dict[str, Metric] = {}


def declare(*metrics: Metric) -> None:
    """Add metrics to the registry; a name may be declared once only."""
    for m in metrics:
        if m.name in METRICS:
            raise ValueError(f"metric {m.name!r} is declared twice")
        METRICS[m.name] = m


def metric(name: str) -> Metric:
    """The declaration of `name` (KeyError naming this module when it has none)."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"score {name!r} is not declared in hpcsynth.evaluate.metrics") from None


def directions(names: Iterable[str]) -> dict[str, Direction]:
    """The direction of every named score, as the run file's `/evaluation/directions` stores it."""
    return {name: metric(name).direction for name in names}


def headline() -> tuple[str, ...]:
    """The headline scores, in the registry's order."""
    return tuple(name for name, m in METRICS.items() if m.headline)


def per_round() -> tuple[str, ...]:
    """The scores computed during training (every `evaluation.every` rounds and at the last), in the registry's
    order."""
    return tuple(name for name, m in METRICS.items() if m.per_round)


C, H, T, IV, D = Pooling.COUNTS, Pooling.HOLDOUT, Pooling.TRAIN, Pooling.INVERSE_VARIANCE, Pooling.DISTANCES
SURVIVAL: tuple[Role, ...] = ("time", "event")
declare(  # fidelity and diversity (hpcsynth.evaluate.fidelity, pairs, detection, diversity)
    Metric("column_shapes", "higher", C), Metric("column_pair_trends", "higher", C),
    Metric("quality", "higher", C, headline=True, per_round=True),
    Metric("wasserstein", "lower", H), Metric("detection_auroc", "lower", H, headline=True, per_round=True),
    Metric("alpha_precision", "higher", T), Metric("beta_recall", "higher", T), Metric("authenticity", "higher", T),
    Metric("category_coverage", "higher", C), Metric("rare_category_coverage", "higher", C))
declare(  # survival (hpcsynth.evaluate.survival)
    Metric("km_max_gap", "lower", C, SURVIVAL, headline=True, per_round=True),
    Metric("km_logrank_p", "higher", C, SURVIVAL),
    Metric("km_group_max_gap", "lower", C, (*SURVIVAL, "risk_group")),
    Metric("km_group_mean_gap", "lower", C, (*SURVIVAL, "risk_group")),
    Metric("cox_hr_in_ci", "higher", IV, (*SURVIVAL, "cox")), Metric("cox_log_hr_mae", "lower", IV, (*SURVIVAL, "cox")),
    Metric("cindex_tstr", "higher", H, (*SURVIVAL, "cox")), Metric("cindex_trtr", "higher", H, (*SURVIVAL, "cox")),
    Metric("td_auroc_tstr", "higher", H, (*SURVIVAL, "cox")), Metric("td_auroc_trtr", "higher", H, (*SURVIVAL, "cox")),
    # competing risks: the largest gap over causes between real and synthetic cumulative incidence
    Metric("cif_max_gap", "lower", C, (*SURVIVAL, "causes")),
    # synthetic rows breaking a survival constraint: a function of the synthetic table alone, the same on every
    # site, hence exact
    Metric("survival_constraint_violations", "lower", C, SURVIVAL))
declare(  # genomics (hpcsynth.evaluate.genomics)
    Metric("gene_frequency_similarity", "higher", C, ("genes",)), Metric("gene_frequency_mae", "lower", C, ("genes",)),
    Metric("co_mutation_agreement", "higher", C, ("genes",)),
    Metric("co_mutation_log_or_mae", "lower", C, ("genes",)))
declare(  # composites (hpcsynth.evaluate.composite)
    Metric("csf", "higher", Pooling.MIXED, headline=True, per_round=True),
    Metric("gsf", "higher", C, ("genes",), headline=True, per_round=True))
declare(  # utility (hpcsynth.evaluate.utility)
    *(Metric(f"{way}_{score}", "higher", H, ("target",), headline=score == "auroc",
             per_round=(way, score) == ("tstr", "auroc"))
      for way in ("tstr", "trtr") for score in ("auroc", "balanced_accuracy", "g_mean")),
    Metric("tstr_trtr_auroc_ratio", "higher", H, ("target",)))
declare(  # privacy (hpcsynth.evaluate.privacy, attacks)
    Metric("dcr_synthetic_p5", "higher", D, per_round=True), Metric("dcr_holdout_p5", "higher", D),
    Metric("dcr_ratio", "higher", D, headline=True, per_round=True),
    Metric("dcr_closer_than_holdout_median", "lower", D),
    Metric("exact_match_rate", "lower", D), Metric("nndr_p5", "higher", D), Metric("nndr_median", "higher", D),
    Metric("membership_auroc", "lower", T, headline=True),
    Metric("attribute_inference_accuracy", "lower", T, ("sensitive",)),
    Metric("attribute_inference_gain", "lower", T, ("sensitive",)),
    Metric("k_anonymity", "higher", T, ("sensitive", "quasi")),
    Metric("l_diversity", "higher", T, ("sensitive", "quasi")),
    Metric("homogeneity_risk", "lower", T, ("sensitive", "quasi")))
declare(  # Anonymeter: risks beyond the control attack, with upper 95% bounds (hpcsynth.evaluate.anonymeter_risks)
    *(Metric(f"{risk}{bound}", "lower", T, needs)
      for risk, needs in (("singling_out_risk", ()), ("linkability_risk", ()), ("inference_risk", ("sensitive",)))
      for bound in ("", "_ci_high")),
    # density-ratio membership inference (hpcsynth.evaluate.domias)
    Metric("domias_auroc", "lower", T, headline=True),
    # loss-threshold membership inference on the run's weights, scored by `hpcsynth evaluate` (evaluate.whitebox)
    Metric("whitebox_membership_auroc", "lower", H))
declare(  # fairness (hpcsynth.evaluate.fairness)
    Metric("fairness_fidelity_min", "higher", C, ("subgroups",), headline=True),
    Metric("fairness_fidelity_gap", "lower", C, ("subgroups",)),
    Metric("fairness_utility_min", "higher", H, ("subgroups", "target")),
    Metric("fairness_utility_gap", "lower", H, ("subgroups", "target")))
declare(Metric("wall_s", "lower", Pooling.ROOT),  # the training job's wall time of one strategy
        Metric("epsilon_spent", "lower", Pooling.ROOT))  # the most privacy any site spent (the run file's /privacy)
