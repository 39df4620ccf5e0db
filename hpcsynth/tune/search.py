"""The Optuna study behind `hpcsynth tune`, shared through a journal file, and the workers that run its trials.

The study lives in Optuna's journal file storage (`JournalStorage` over `JournalFileBackend`) in the study
folder: an append-only log that every worker reads and appends to under a file lock, so workers in separate
processes, or on separate nodes of a shared filesystem, share one study without a database server. A worker
asks the study for values, runs the trial as a job (`hpcsynth.tune.trial`) and tells the study its objectives;
a trial that fails is recorded as failed and the worker goes on. `run_local` runs the workers as processes on
this machine (`python -m hpcsynth.tune.search STUDY.yaml QUOTA WORKER`), each with its share of the budget.

With `prune:` the worker reports each per-round score of the objective to the trial (`trial.report`, the round
as the step) while its job runs, and stops the job when the study's pruner says so: the trial is then recorded
as pruned. With `sampler: iorbo` the study keeps the real objectives and `hpcsynth.tune.iorbo.IORBOSampler`
proposes each trial's values from the trials' current mean ranks.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, Trial, TrialState

from hpcsynth.messages import ConfigError
from hpcsynth.tune.iorbo import IORBOSampler
from hpcsynth.tune.study_file import Param, Study, load_study
from hpcsynth.tune.trial import TrialFailed, TrialStopped, Watch, run_trial

STUDY_NAME = "hpcsynth"
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


def storage(study: Study) -> JournalStorage:
    """The journal file storage of `study` (its folder is created)."""
    study.folder.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(study.journal)))


def sampler(study: Study, worker: int) -> optuna.samplers.BaseSampler:
    """TPE, NSGA-II or IORBO, seeded per worker (workers with one seed would propose the same values)."""
    seed = study.seed + worker
    if study.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if study.sampler == "iorbo":
        return IORBOSampler(study.params, [d == "higher" for d in study.objectives.values()], seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def pruner(study: Study) -> optuna.pruners.BasePruner:
    """The study's pruner (`prune:`); none without a `prune:` section."""
    prune = study.prune
    if prune is None or prune.pruner == "none":
        return optuna.pruners.NopPruner()
    if prune.pruner == "threshold":
        return optuna.pruners.ThresholdPruner(lower=prune.lower, upper=prune.upper, n_warmup_steps=prune.warmup)
    if prune.pruner == "percentile":
        return optuna.pruners.PercentilePruner(prune.percentile, n_startup_trials=prune.startup,
                                               n_warmup_steps=prune.warmup)
    return optuna.pruners.MedianPruner(n_startup_trials=prune.startup, n_warmup_steps=prune.warmup)


def open_study(study: Study, worker: int = 0, create: bool = False) -> optuna.Study:
    """The Optuna study of `study` (created when `create`; else it must exist)."""
    directions = ["maximize" if d == "higher" else "minimize" for d in study.objectives.values()]
    if create:
        return optuna.create_study(storage=storage(study), sampler=sampler(study, worker), pruner=pruner(study),
                                   study_name=STUDY_NAME, directions=directions)
    return optuna.load_study(storage=storage(study), sampler=sampler(study, worker), pruner=pruner(study),
                             study_name=STUDY_NAME)


def suggest(trial: Trial, param: Param) -> int | float | str | bool:
    """The trial's value of one parameter, drawn by the sampler from its range."""
    if param.kind == "choice":
        return trial.suggest_categorical(param.key, param.values)
    low, high = param.values
    if param.kind == "int":
        return trial.suggest_int(param.key, low, high)
    return trial.suggest_float(param.key, low, high, log=param.kind == "log_float")


def watcher(trial: Trial) -> Watch:
    """Report a per-round score to the trial and say whether the pruner stops it."""

    def watch(step: int, value: float) -> bool:
        trial.report(value, step)
        return trial.should_prune()

    return watch


def work(study: Study, quota: int, worker: int) -> None:
    """Run `quota` trials of the shared study: ask, run the job, tell (a failed trial is told as failed, a
    stopped one as pruned)."""

    def objective(trial: Trial) -> tuple[float, ...]:
        trial.set_user_attr("run", str(study.trial_folder(trial.number) / "run.h5"))
        values = {p.key: suggest(trial, p) for p in study.params}
        try:
            scores = run_trial(study, trial.number, values, watcher(trial) if study.prune is not None else None)
        except TrialStopped as stopped:
            raise optuna.TrialPruned(str(stopped)) from None
        return tuple(scores.values())

    open_study(study, worker).optimize(objective, n_trials=quota, catch=(TrialFailed,))


def finished(trials: list[FrozenTrial]) -> int:
    return sum(t.state in FINISHED for t in trials)


def quotas(remaining: int, parallel: int) -> list[int]:
    """The remaining budget split over at most `parallel` workers, as evenly as it goes."""
    workers = min(parallel, remaining)
    return [remaining // workers + (k < remaining % workers) for k in range(workers)] if workers else []


def run_local(study: Study, resume: bool = False, parallel: int | None = None) -> list[str]:
    """Run the study's remaining trials as worker processes on this machine; return what went wrong with any
    worker (empty when all ended well; a failed trial is not a failed worker).

    A new study needs a fresh folder; `resume` continues the one there (trials finished are kept; trials a
    killed run left running are recorded as failed, since no worker runs them any more), up to `trials`."""
    exists = study.journal.is_file()
    if exists and not resume:
        raise ConfigError(f"{study.source}: a study already exists in {study.folder}; continue it with --resume")
    if resume and not exists:
        raise ConfigError(f"{study.source}: no study to resume in {study.folder}")
    shared = open_study(study, create=not exists)
    for trial in shared.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        shared.tell(trial.number, state=TrialState.FAIL)
    remaining = study.trials - finished(shared.get_trials(deepcopy=False))
    workers = []
    for k, quota in enumerate(quotas(max(remaining, 0), parallel or study.parallel)):
        log = study.folder / f"worker-{k}.log"
        command = [sys.executable, "-m", "hpcsynth.tune.search", str(study.source), str(quota), str(k)]
        with open(log, "a", encoding="utf-8") as out:
            workers.append((subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT), log))
    return [f"worker {k} exited with code {process.wait()} (log: {log})"
            for k, (process, log) in enumerate(workers) if process.wait() != 0]


def main(argv: list[str] | None = None) -> None:
    """A worker process: `python -m hpcsynth.tune.search STUDY.yaml QUOTA WORKER`."""
    path, quota, worker = argv or sys.argv[1:]
    work(load_study(Path(path)), int(quota), int(worker))


if __name__ == "__main__":
    main()
