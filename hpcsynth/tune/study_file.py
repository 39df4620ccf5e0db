"""The study file of `hpcsynth tune`: a base job, a search space over its keys, objectives and a budget.

It is validated like a job file and with the same helpers (`hpcsynth.config`), so a bad study stops with one
line naming the key before any trial runs: an unknown key, a space key that is not a job key, an empty or
mistyped range, a range end the job itself would refuse, an objective the evaluation does not declare, a
budget below 1. Paths in it (`job`, `output`) are relative to the study file. Everything a study writes
besides its HDF5 file (the journal the workers share, one folder per trial) goes in `folder`: the output's
path without its suffix.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from hpcsynth.config import RunConfig, _build, _coerce, from_dict, load
from hpcsynth.data.sources import count_sites
from hpcsynth.evaluate.metrics import METRICS, Direction, per_round
from hpcsynth.messages import ConfigError
from hpcsynth.submit import set_option

PRIVACY_SPENT = "epsilon"  # the objective that is the privacy a trial spent (the largest epsilon of any site)
RANGE_KINDS = ("int", "float", "log_float", "choice")
SAMPLERS = ("tpe", "nsga2", "iorbo")
PRUNERS = ("median", "percentile", "threshold", "none")
SET_BY_STUDY = ("output", "progress")  # every trial's own run file, no progress bar
Scalar = int | float | str | bool


@dataclass(frozen=True)
class Param:
    """One searched job key.

    Parameters
    ----------
    key : str
        The dotted job-file key, e.g. ``model.batch_size``.
    kind : {"int", "float", "log_float", "choice"}
        Integers or numbers in [low, high] (log_float: sampled on a log scale), or one of the listed values.
    values : list
        ``[low, high]`` for a range, the candidates for ``choice``.
    """

    key: str
    kind: Literal["int", "float", "log_float", "choice"]
    values: list[Scalar]


@dataclass
class Prune:
    """Stopping bad trials early on their per-round scores (the study file's `prune:` section).

    Parameters
    ----------
    pruner : {"median", "percentile", "threshold", "none"}
        Optuna's MedianPruner, PercentilePruner, ThresholdPruner, or none (the scores are reported, nothing is
        stopped).
    startup : int
        Trials completed before any trial is pruned (median, percentile: `n_startup_trials`).
    warmup : int
        Rounds a trial reports before it may be pruned (median, percentile: `n_warmup_steps`).
    percentile : float
        The percentile pruner's percentile, in (0, 100): a trial is kept while its best score is among the best
        `percentile` % of the others' at the same round (50 is the median; lower stops more).
    lower, upper : float or None
        The threshold pruner's bounds: a trial whose score falls below `lower` or above `upper` is stopped.
    every : int or None
        The trials' `evaluation.every` (score the release every this many rounds); default: the job's own.
    """

    pruner: str = "median"
    startup: int = 5
    warmup: int = 0
    percentile: float = 25.0
    lower: float | None = None
    upper: float | None = None
    every: int | None = None


@dataclass
class StudyFields:
    """The study file's vocabulary, parsed by `hpcsynth.config`'s helpers (an unknown key is an error)."""

    job: str
    space: dict[str, dict[str, list[Scalar]]]
    objectives: list[str]
    trials: int = 20
    parallel: int = 1
    sampler: str | None = None  # tpe for one objective, nsga2 for several; iorbo (several): the mean rank
    seed: int = 0
    output: str | None = None  # default: the study file's name with .h5
    prune: Prune | None = None  # stop bad trials on their per-round scores (one objective only)
    # a share of every site's training rows the trials are scored on (their data.validation), so that the
    # held-out rows, which /best's job is judged on, are never seen by the search (0: trials use the held-out rows)
    validation: float = 0.0


@dataclass
class Study:
    """A validated study: the resolved paths, the base job (as parsed YAML), the parameters and the objectives.

    Parameters
    ----------
    source : Path
        The study file.
    text : str
        Its text, stored in the results.
    job : Path
        The base job file.
    base : dict
        The base job as parsed YAML; every trial is a copy of it with the trial's values set.
    params : list of Param
        The search space, in the file's order.
    objectives : dict of str to {"higher", "lower"}
        Each objective with its direction (the evaluation registry's; ``epsilon``: lower).
    trials, parallel : int
        The budget (trials run, failed ones included) and the number of trials run at once.
    sampler : {"tpe", "nsga2", "iorbo"}
        Optuna's sampler; iorbo is TPE on each trial's mean rank over the objectives (`hpcsynth.tune.iorbo`).
    seed : int
        The sampler's seed (worker k seeds with seed + k).
    output : Path
        The study HDF5 file; `folder` holds the journal and the trials.
    ranks : int
        The processes of one trial: one per site (and per rank of a site), one for a one-site job.
    prune : Prune or None
        Stop bad trials on the per-round scores of the (single) objective; None: every trial runs to its end.
    validation : float
        The trials' `data.validation`: the share of the training rows they are scored on (0: the held-out rows).
    """

    source: Path
    text: str
    job: Path
    base: dict
    params: list[Param]
    objectives: dict[str, Direction]
    trials: int
    parallel: int
    sampler: str
    seed: int
    output: Path
    ranks: int = 1
    prune: Prune | None = None
    validation: float = 0.0

    @property
    def folder(self) -> Path:
        return self.output.with_suffix("")

    @property
    def journal(self) -> Path:
        """Optuna's journal file: the study every worker reads and appends to."""
        return self.folder / "journal.log"

    def trial_folder(self, number: int) -> Path:
        return self.folder / "trials" / str(number)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _optional(tp: Any) -> Any:
    """X for Optional[X] (the privacy section), else `tp` unchanged."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def job_key_type(key: str) -> Any:
    """The annotation of the dotted job key `key` in `RunConfig`; ConfigError when the job has no such key."""
    tp: Any = RunConfig
    for depth, part in enumerate(key.split(".")):
        tp = _optional(tp)
        names = [f.name for f in dataclasses.fields(tp)] if dataclasses.is_dataclass(tp) else []
        if part not in names or (depth == 0 and part in (*SET_BY_STUDY, "source", "text")):
            raise ConfigError(f"space.{key}: not a job key the study can set")
        tp = typing.get_type_hints(tp)[part]
    _require(not dataclasses.is_dataclass(_optional(tp)), f"space.{key}: a section, not a job key")
    return tp


def _param(key: str, spec: dict[str, list[Scalar]], base: dict) -> Param:
    """Check one space entry: one range kind, a non-empty range, values of the key's type that the job accepts."""
    tp = job_key_type(key)
    kinds = list(spec)
    _require(len(kinds) == 1 and kinds[0] in RANGE_KINDS,
             f"space.{key}: give exactly one of {', '.join(RANGE_KINDS)}, got {', '.join(kinds) or 'none'}")
    kind = kinds[0]
    values = spec[kind]
    where = f"space.{key}.{kind}"
    if kind == "choice":
        _require(len(values) > 0, f"{where}: an empty choice")
    else:
        _require(len(values) == 2, f"{where}: expected [low, high], got {values}")
        values = _coerce(values, list[int] if kind == "int" else list[float], where)
        _require(values[0] <= values[1], f"{where}: an empty range {values}")
        _require(kind != "log_float" or values[0] > 0, f"{where}: a log range needs low > 0, got {values}")
    for value in values:
        _coerce(value, tp, where)
        job = set_option(yaml.safe_load(yaml.safe_dump(base)), key, value)
        from_dict(job, source=f"{where}: {value!r} gives")  # a range end the job would refuse fails here
    return Param(key, kind, list(values))


def _objectives(names: list[str], study: StudyFields, base: dict) -> dict[str, Direction]:
    known = (PRIVACY_SPENT, *METRICS)
    _require(len(names) > 0, "objectives: give at least one")
    _require(len(set(names)) == len(names), f"objectives: listed twice in {names}")
    for name in names:
        _require(name in known, f"objectives: {name!r} is not a score of the evaluation (known: {', '.join(known)})")
    _require(PRIVACY_SPENT not in names or "privacy" in base or any(k.startswith("privacy.") for k in study.space),
             f"objectives: {PRIVACY_SPENT} is the privacy spent, but the job has no privacy section and the space "
             "no privacy.* key")
    return {name: METRICS["epsilon_spent" if name == PRIVACY_SPENT else name].direction for name in names}


def _prune(prune: Prune, objectives: dict[str, Direction], base: dict) -> Prune:
    """Check the `prune:` section: one objective with a per-round score, a job that scores during training, the
    pruner's own settings only."""
    _require(prune.pruner in PRUNERS, f"prune.pruner: expected one of {', '.join(PRUNERS)}, got {prune.pruner!r}")
    _require(len(objectives) == 1, f"prune: Optuna prunes single-objective studies, and this one has "
             f"{len(objectives)} objectives ({', '.join(objectives)})")
    objective = next(iter(objectives))
    _require(objective in per_round(), f"prune: the objective {objective} has no per-round score "
             f"(per-round: {', '.join(per_round())})")
    _require(prune.startup >= 0, f"prune.startup: must be at least 0, got {prune.startup}")
    _require(prune.warmup >= 0, f"prune.warmup: must be at least 0, got {prune.warmup}")
    _require(prune.every is None or prune.every >= 1, f"prune.every: must be at least 1, got {prune.every}")
    _require(prune.every is not None or (base.get("evaluation") or {}).get("every") is not None,
             "prune.every: the job scores its release after the last round only (no evaluation.every); give "
             "prune.every (rounds between scores)")
    if prune.pruner == "percentile":
        _require(0 < prune.percentile < 100, f"prune.percentile: must be in (0, 100), got {prune.percentile}")
    if prune.pruner == "threshold":
        _require(prune.lower is not None or prune.upper is not None,
                 "prune.lower: the threshold pruner needs lower or upper (or both)")
    else:
        for key in ("lower", "upper"):
            _require(getattr(prune, key) is None, f"prune.{key}: only for pruner: threshold")
    return prune


def _validate(fields: StudyFields, source: Path, text: str) -> Study:
    _require(fields.trials >= 1, f"trials: must be at least 1, got {fields.trials}")
    _require(fields.parallel >= 1, f"parallel: must be at least 1, got {fields.parallel}")
    _require(fields.sampler in (None, *SAMPLERS),
             f"sampler: expected one of {', '.join(SAMPLERS)}, got {fields.sampler!r}")
    _require(len(fields.space) > 0, "space: give at least one job key to search")
    _require(0.0 <= fields.validation < 1.0, f"validation: must be in [0, 1), got {fields.validation}")
    job = source.parent / fields.job
    cfg = load(job)  # the base job must be a good job on its own
    _require(len(cfg.strategies) == 1, f"job: {job} compares {len(cfg.strategies)} strategies; a study tunes one")
    base = yaml.safe_load(cfg.text) or {}
    params = [_param(key, spec, base) for key, spec in fields.space.items()]
    objectives = _objectives(fields.objectives, fields, base)
    _require(fields.sampler != "iorbo" or len(objectives) > 1,
             "sampler: iorbo ranks trials over several objectives; with one objective use tpe")
    prune = _prune(fields.prune, objectives, base) if fields.prune is not None else None
    output = source.parent / (fields.output or source.with_suffix(".h5").name)
    sampler = fields.sampler or ("tpe" if len(objectives) == 1 else "nsga2")
    ranks = count_sites(cfg.data) * cfg.federation.ranks_per_site
    return Study(source, text, job, base, params, objectives, fields.trials, fields.parallel, sampler, fields.seed,
                 output, ranks, prune, fields.validation)


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; every error is one line naming the file and the key."""
    source = Path(path)
    _require(source.is_file(), f"{source}: no such study file")
    text = source.read_text(encoding="utf-8")
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{source}: not valid YAML") from None
    try:
        _require(isinstance(mapping, dict), "expected a mapping of options at the top level")
        for key in ("job", "space", "objectives"):
            _require(key in mapping, f"{key}: missing (a study needs job, space and objectives)")
        return _validate(_build(StudyFields, mapping), source, text)
    except ConfigError as err:
        message = str(err)
        raise ConfigError(message if message.startswith(str(source)) else f"{source}: {message}") from None
