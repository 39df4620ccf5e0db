"""The release policy: the checks a run's stored scores must pass before its synthetic rows may leave the sites.

A policy is a list of small declared rules, `Check(name, metric, threshold)`: the score `metric` must be no worse
than `threshold` (a number, or another score of the same run), "no worse" read from the score's direction in
`hpcsynth.evaluate.metrics` (at most for "lower", at least for "higher"). The privacy accounting takes part as
`epsilon_spent` (a declared score: the largest over sites) and the bound `epsilon_budget`, both present when DP
was asked for; a check declared `when: dp` applies only then. A score the run does not have fails its check: it
was never measured. `DEFAULT_POLICY` is the policy docs/release-policy.yaml writes out (a test keeps the two equal).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from hpcsynth.evaluate.metrics import METRICS, Direction
from hpcsynth.messages import ConfigError

BUDGET = "epsilon_budget"  # the privacy budget a job asked for: a bound for `epsilon_spent`, not a score
When = Literal["always", "dp"]


def direction(name: str) -> Direction:
    """Which values of a score are better (ConfigError for a name the registry does not declare)."""
    if name in METRICS:
        return METRICS[name].direction
    raise ConfigError(f"{name!r} is not a score of hpcsynth.evaluate.metrics")


def known(name: str, bound: bool = False) -> None:
    """Refuse a name a check may not use: a declared score, or (as a bound) the privacy budget too."""
    if not (bound and name == BUDGET):
        direction(name)


@dataclass(frozen=True)
class Check:
    """One rule of a release policy.

    Parameters
    ----------
    name : str
        What the rule protects against, as the refusal names it.
    metric : str
        A score of the run's `/evaluation`, or `epsilon_spent`.
    threshold : float or str
        The bound: a number, or the name of another score of the same run (e.g. `dcr_holdout_p5`).
    when : {"always", "dp"}
        "dp": the rule applies only when the run was trained with a privacy budget.
    """

    name: str
    metric: str
    threshold: float | str
    when: When = "always"

    @property
    def op(self) -> str:
        """The comparison the metric's direction implies: `<=` for a lower-is-better score, `>=` otherwise."""
        return "<=" if direction(self.metric) == "lower" else ">="

    def judge(self, evidence: Mapping[str, float]) -> Outcome:
        """The outcome of this rule on a run's scores and accounting (see `evidence`)."""
        if self.when == "dp" and BUDGET not in evidence:
            return Outcome(self, None, None, applies=False)
        bound = self.threshold if isinstance(self.threshold, str) else None
        missing = [n for n in (self.metric, bound) if n is not None and n not in evidence]
        if missing:
            return Outcome(self, None, None, missing=tuple(missing))
        value = float(evidence[self.metric])
        limit = float(evidence[bound]) if bound else float(self.threshold)
        return Outcome(self, value, limit)


@dataclass(frozen=True)
class Outcome:
    """A check's verdict on one run: the value, the bound it met or missed, and the scores it lacked."""

    check: Check
    value: float | None
    limit: float | None
    missing: tuple[str, ...] = ()
    applies: bool = True

    @property
    def passed(self) -> bool:
        """Met, or not applicable; a missing or NaN score never passes."""
        if not self.applies:
            return True
        if self.missing or self.value is None or self.limit is None or math.isnan(self.value):
            return False
        close = math.isclose(self.value, self.limit, rel_tol=1e-9, abs_tol=0.0)
        return close or (self.value <= self.limit if self.check.op == "<=" else self.value >= self.limit)

    def line(self) -> str:
        """One line naming the check, its score, the value and the threshold."""
        c = self.check
        if not self.applies:
            return f"{c.name}: not applicable (no privacy budget was set)"
        if self.missing:
            return (f"{c.name}: {', '.join(self.missing)} is not in the run's /evaluation; "
                    "run `hpcsynth evaluate RUN.h5` first")
        bound = f"{c.threshold} = {self.limit:.4g}" if isinstance(c.threshold, str) else f"{self.limit:g}"
        verdict = "passed" if self.passed else "failed"
        return f"{c.name}: {c.metric} = {self.value:.4g}, must be {c.op} {bound} ({verdict})"


@dataclass(frozen=True)
class Policy:
    """The checks a release must pass, and where they were read from.

    Parameters
    ----------
    checks : tuple of Check
        Every rule; a release passes when every applicable one does.
    source : str
        The policy file, or "default".
    """

    checks: tuple[Check, ...]
    source: str = "default"

    def judge(self, evidence: Mapping[str, float]) -> list[Outcome]:
        """Every check's outcome, in the policy's order."""
        return [c.judge(evidence) for c in self.checks]


DEFAULT_POLICY = Policy((
    Check("no_exact_copies", "exact_match_rate", 0.0),
    Check("not_closer_than_holdout", "dcr_synthetic_p5", "dcr_holdout_p5"),
    Check("membership_inference", "membership_auroc", 0.6),
    Check("density_membership_inference", "domias_auroc", 0.6),
    Check("singling_out", "singling_out_risk_ci_high", 0.3),
    Check("linkability", "linkability_risk_ci_high", 0.3),
    Check("inference", "inference_risk_ci_high", 0.8),
    Check("privacy_budget", "epsilon_spent", "epsilon_budget", when="dp"),
))


def evidence(scores: Mapping[str, float], privacy: Mapping[str, object]) -> dict[str, float]:
    """What the checks read: the scores, and from a run's /privacy attributes (when DP was asked for) the
    budget and the largest epsilon any site spent."""
    found = {k: float(v) for k, v in scores.items()}
    if BUDGET in privacy:
        found[BUDGET] = float(privacy[BUDGET])
        spent = [float(e) for e in privacy.get("epsilon_spent", [])]
        if spent:
            found["epsilon_spent"] = max(spent)
    return found


def _check(entry: object, where: str) -> Check:
    if not isinstance(entry, dict) or not {"name", "metric", "threshold"} <= set(entry):
        raise ConfigError(f"{where}: each check needs name, metric and threshold")
    unknown = set(entry) - {"name", "metric", "threshold", "when"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                          "(known: name, metric, threshold, when)")
    when = entry.get("when", "always")
    if when not in ("always", "dp"):
        raise ConfigError(f"{where}: when must be 'always' or 'dp', not {when!r}")
    threshold = entry["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, str)):
        raise ConfigError(f"{where}: threshold must be a number or the name of a score")
    try:
        known(str(entry["metric"]))
        if isinstance(threshold, str):
            known(threshold, bound=True)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    return Check(str(entry["name"]), str(entry["metric"]),
                 threshold if isinstance(threshold, str) else float(threshold), when)


def load_policy(path: str | Path) -> Policy:
    """A policy from its YAML file (`checks:`, a list of name, metric, threshold and optional when); every score
    named is checked against the registry here, so a typo is an error, not a check that always fails."""
    p = Path(path)
    try:
        mapping = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{p}: cannot read the release policy ({err})") from None
    if not isinstance(mapping, dict) or not isinstance(mapping.get("checks"), list) or not mapping["checks"]:
        raise ConfigError(f"{p}: a release policy is a mapping with a non-empty list `checks`")
    return Policy(tuple(_check(e, f"{p}: checks[{i}]") for i, e in enumerate(mapping["checks"])), str(p))
