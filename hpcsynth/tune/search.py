"""The Optuna study behind `hpcsynth tune`, shared through a journal file, and the workers that run its trials.

The study lives in Optuna's journal file storage (`JournalStorage` over `JournalFileBackend`) in the study
folder: an append-only log that every worker reads and appends to under a file lock, so workers in separate
processes, or on separate nodes of a shared filesystem, share one study without a database server. A worker
asks the study for values, runs the trial as a job (`hpcsynth.tune.trial`) and tells the study its objectives;
a trial that fails is recorded as failed and the worker goes on. `run_local` runs the workers as processes on
this machine (`python -m hpcsynth.tune.worker`), each with its share of the budget; on a cluster each task of a
SLURM array is a worker (`hpcsynth.tune.cluster`) that runs trials until the budget is used up.

The budget counts the trials that run and those that ended on their own values: complete, pruned, or failed
with their job's error (user attribute `error`). A trial whose worker was stopped under it (a cancelled or
preempted array task: user attribute `interrupted`) or died without a word (left RUNNING; `fail_stale` records
it as failed when no worker runs) is failed too but does not count, so another trial takes its place. Starting a
trial holds a lock beside the journal, so concurrent workers never start more trials than the budget.

With `prune:` the worker reports each per-round score of the objective to the trial (`trial.report`, the round
as the step) while its job runs, and stops the job when the study's pruner says so: the trial is then recorded
as pruned. With `sampler: iorbo` the study keeps the real objectives and `hpcsynth.tune.iorbo.IORBOSampler`
proposes each trial's values from the trials' current mean ranks.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, Trial, TrialState

from hpcsynth.messages import ConfigError
from hpcsynth.tune.iorbo import IORBOSampler
from hpcsynth.tune.study_file import Param, Study
from hpcsynth.tune.trial import TrialFailed, TrialInterrupted, TrialStopped, Watch, run_trial

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


ERROR = "error"  # a failed trial's user attribute: why its job failed (it counts towards the budget)
INTERRUPTED = "interrupted"  # a failed trial's user attribute: why its worker stopped under it (it does not)
Guard = Callable[[], AbstractContextManager]  # what a trial's job runs inside (the worker's signal handling)


def counts(trial: FrozenTrial) -> bool:
    """Whether `trial` uses up the budget: it runs, or it ended on its own values (complete, pruned, or failed
    with its job's error). A trial whose worker was stopped or died under it (cancelled, preempted, a lost node)
    does not: the study runs another in its place."""
    if trial.state == TrialState.FAIL:
        return ERROR in trial.user_attrs
    return trial.state in (TrialState.RUNNING, *FINISHED)


def remaining(study: Study, shared: optuna.Study) -> int:
    """Trials still to start before the budget is used up."""
    return max(study.trials - sum(counts(t) for t in shared.get_trials(deepcopy=False)), 0)


def fail_stale(shared: optuna.Study) -> list[int]:
    """Record the trials left running (or waiting) as failed, and return their numbers. Only when no worker runs
    any more (a resume, the end of an array): their workers were killed before they could say so."""
    stale = shared.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    for trial in stale:
        shared.tell(trial.number, state=TrialState.FAIL)
    return [t.number for t in stale]


def claim(study: Study, shared: optuna.Study) -> Trial | None:
    """A new trial, or None when the budget is used up; the check and the ask hold the study's budget lock
    (a symlink lock beside the journal, safe on NFS), so concurrent workers never start more than the budget."""
    lock = JournalFileSymlinkLock(str(study.folder / "budget"))
    lock.acquire()
    try:
        return shared.ask() if remaining(study, shared) > 0 else None
    finally:
        lock.release()


def run_one(study: Study, shared: optuna.Study, trial: Trial, srun: bool = False, task: str = "",
            guard: Guard = nullcontext) -> None:
    """Run one claimed trial (its user attributes: `run`, `worker` the host and process id running it, `task` the
    array task) and tell the study how it ended: its objectives, pruned, failed (its job's error in
    the user attribute `error`), or failed and interrupted (`interrupted`; the exception is re-raised, since
    the worker is being stopped)."""
    trial.set_user_attr("run", str(study.trial_folder(trial.number) / "run.h5"))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # where to look for a lost trial
    if task:
        trial.set_user_attr("task", task)
    values = {p.key: suggest(trial, p) for p in study.params}
    try:
        with guard():
            scores = run_trial(study, trial.number, values, watcher(trial) if study.prune is not None else None,
                               srun)
    except TrialStopped:
        shared.tell(trial, state=TrialState.PRUNED)
    except TrialInterrupted as err:
        trial.set_user_attr(INTERRUPTED, str(err))
        shared.tell(trial, state=TrialState.FAIL)
        raise
    except TrialFailed as err:
        trial.set_user_attr(ERROR, str(err))
        shared.tell(trial, state=TrialState.FAIL)
    except BaseException as err:
        trial.set_user_attr(INTERRUPTED, f"the worker was stopped: {err or type(err).__name__}")
        shared.tell(trial, state=TrialState.FAIL)
        raise
    else:
        shared.tell(trial, list(scores.values()))


def worker_offset(index: int, started_at: int) -> int:
    """The sampler seed's offset of worker `index` of a start that found `started_at` trials: the index for a
    new study; for a resumed one it differs from every earlier start's (a repeated seed would repeat the
    sampler's random start-up values)."""
    return index + 1000 * started_at


def work(study: Study, quota: int | None, worker: int, srun: bool = False, task: str = "",
         guard: Guard = nullcontext) -> None:
    """Run trials of the shared study, one after another, until the budget is used up (or after `quota`
    trials, when given). `srun`, `task` and `guard` go to `run_one`."""
    started_at = len(open_study(study).get_trials(deepcopy=False))
    shared = open_study(study, worker_offset(worker, started_at))
    done = 0
    while quota is None or done < quota:
        trial = claim(study, shared)
        if trial is None:
            return
        run_one(study, shared, trial, srun, task, guard)
        done += 1


def finished(trials: list[FrozenTrial]) -> int:
    """The trials that used up the budget and have ended."""
    return sum(t.state in FINISHED and counts(t) for t in trials)


def quotas(remaining: int, parallel: int) -> list[int]:
    """The remaining budget split over at most `parallel` workers, as evenly as it goes."""
    workers = min(parallel, remaining)
    return [remaining // workers + (k < remaining % workers) for k in range(workers)] if workers else []


def core_share(k: int, workers: int) -> set[int]:
    """Worker k's cores: this process's cores split into `workers` contiguous shares (one core each, shared in
    turn, when there are more workers than cores). A trial's job sizes its threads from its affinity
    (`set_threads`), so parallel trials do not each take every core with threads that spin waiting for it."""
    cores = sorted(os.sched_getaffinity(0))
    if workers >= len(cores):
        return {cores[k % len(cores)]}
    size, extra = divmod(len(cores), workers)
    start = k * size + min(k, extra)
    return set(cores[start:start + size + (k < extra)])


def start_on(command: list[str], log: Path, cores: set[int]) -> subprocess.Popen:
    """Start `command` bound to `cores` (its CPU affinity, which its children inherit), its output appended to
    `log`."""
    with open(log, "a", encoding="utf-8") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: os.sched_setaffinity(0, cores))


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
    fail_stale(shared)
    workers = []
    shares = quotas(remaining(study, shared), parallel or study.parallel)
    for k, quota in enumerate(shares):
        log = study.folder / f"worker-{k}.log"
        command = [sys.executable, "-m", "hpcsynth.tune.worker", str(study.source), "--quota", str(quota),
                   "--index", str(k)]
        workers.append((start_on(command, log, core_share(k, len(shares))), log))
    return [f"worker {k} exited with code {process.wait()} (log: {log})"
            for k, (process, log) in enumerate(workers) if process.wait() != 0]
