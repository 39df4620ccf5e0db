"""The study's results from the Optuna study: every trial's row, the Pareto front and the chosen trial.

With one objective the front is the best trial; with several it is Optuna's Pareto front of the completed
trials, and the chosen trial is the front's best on the first objective listed (the study file's order says
what matters most). With `sampler: iorbo` the table has each completed trial's mean rank over the objectives
(`mean_rank`), and the chosen trial is the one with the lowest (always on the front: a trial that dominates
another ranks at least as well on every objective and better on one).
"""
from __future__ import annotations

import math
from pathlib import Path

import optuna
import pandas as pd
import yaml
from optuna.trial import TrialState

from hpcsynth.io.study import StudyContent, write_study
from hpcsynth.tune.iorbo import mean_ranks
from hpcsynth.tune.search import counts
from hpcsynth.tune.study_file import Study

MEAN_RANK = "mean_rank"  # the IORBO column of /trials


def ranked(study: Study, shared: optuna.Study) -> dict[int, float]:
    """Each completed trial's mean rank over the objectives (IORBO's value), by number."""
    done = shared.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranks = mean_ranks([t.values for t in done], [d == "higher" for d in study.objectives.values()])
    return {t.number: float(r) for t, r in zip(done, ranks)}


def trials_table(study: Study, shared: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, whether it was interrupted (failed under a stopped or lost worker, so
    not counted in the budget), run file, the values searched, the objectives (NaN where none)."""
    rows = []
    for t in shared.get_trials(deepcopy=False):
        values = t.values if t.values is not None else [math.nan] * len(study.objectives)
        rows.append({"number": t.number, "state": t.state.name, "interrupted": not counts(t),
                     "run": t.user_attrs.get("run", str(study.trial_folder(t.number) / "run.h5")),
                     **{p.key: t.params.get(p.key, math.nan) for p in study.params},
                     **dict(zip(study.objectives, values))})
    columns = ["number", "state", "interrupted", "run", *(p.key for p in study.params), *study.objectives]
    table = pd.DataFrame(rows, columns=columns)
    if study.sampler == "iorbo":
        ranks = ranked(study, shared)
        table[MEAN_RANK] = [ranks.get(n, math.nan) for n in table["number"]]
    return table


def front(shared: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The Pareto-optimal completed trials (the best one for a single objective), by number."""
    if not shared.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    if len(shared.directions) == 1:
        return [shared.best_trial]
    return sorted(shared.best_trials, key=lambda t: t.number)


def chosen(shared: optuna.Study, optimal: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial | None:
    """The front's best trial on the first objective (the lowest number among ties)."""
    if not optimal:
        return None
    sign = 1 if shared.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
    return max(optimal, key=lambda t: (sign * t.values[0], -t.number))


def lowest_rank(study: Study, shared: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The completed trial with the lowest mean rank (the lowest number among ties)."""
    ranks = ranked(study, shared)
    return shared.trials[min(ranks, key=lambda n: (ranks[n], n))] if ranks else None


def best_job(study: Study, trial_job: Path) -> str:
    """The chosen trial's job file as `/best` keeps it, ready to run: with a validation split, its release is
    judged on the held-out rows again (the split removed), the rows the search never saw."""
    text = trial_job.read_text(encoding="utf-8")
    if study.validation == 0:
        return text
    job = yaml.safe_load(text)
    job["data"].pop("validation", None)
    return yaml.safe_dump(job, sort_keys=False)


def write_results(study: Study, shared: optuna.Study) -> Path:
    """Write the study HDF5 file (`hpcsynth.io.study`) from the shared study; return its path."""
    optimal = front(shared)
    iorbo = study.sampler == "iorbo"
    best = lowest_rank(study, shared) if iorbo else chosen(shared, optimal)
    job = study.trial_folder(best.number) / "job.yaml" if best is not None else None
    content = StudyContent(study.text, str(study.source.resolve()), trials_table(study, shared),
                           [p.key for p in study.params], dict(study.objectives), [t.number for t in optimal],
                           best.number if best is not None else None,
                           best_job(study, job) if job is not None else "",
                           "the lowest mean rank" if iorbo else "the first objective")
    return write_study(study.output, content)
