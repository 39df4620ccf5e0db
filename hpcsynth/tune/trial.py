"""One trial: the base job with the trial's values set, run as a normal hpcsynth job, scored from its run file.

The job file goes to `<study folder>/trials/<n>/job.yaml` and writes `run.h5` beside it; it runs as
`mpiexec -n K hpcsynth run` (K the job's ranks: one per site) or, for a one-site job, as one plain process, so a
trial is exactly the job a user would run by hand. Its objectives are read from the run file's `/evaluation`;
one the job does not score is added by `hpcsynth evaluate` on the run file first. Any failure (a non-zero exit,
a missing score) is a `TrialFailed`, which the study records as a failed trial before it goes on. A job that
exits with code 3 checkpointed after a signal (cancelled, preempted, at its time limit): that is a
`TrialInterrupted`, a failure of the cluster and not of the trial's values. Inside a SLURM allocation (a study's
array task) the ranks are started with `srun --mpi=pmi2 -n K`, as the sbatch templates start them.

With a `watch` (the study prunes), the runner polls the job's partial run file (`run.partial.h5`, replaced
atomically after every round) for new per-round scores of the objective in `/rounds`, hands each to `watch` in
round order, and when `watch` says stop, sends SIGTERM to the job's ranks: the job checkpoints the round it is in
and exits with code 3, leaving its partial file and no run file. That is a `TrialStopped`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from hpcsynth.io.evaluation import read_evaluation
from hpcsynth.io.runfile import partial_path
from hpcsynth.scale import mpiexec
from hpcsynth.submit import set_option
from hpcsynth.tune.study_file import PRIVACY_SPENT, Study

CLI = (sys.executable, "-m", "hpcsynth.cli")
POLL_S = 0.2  # how often a watched job's partial file is read
STOP_WAIT_S = 120  # how long a stopped job may take to checkpoint and exit before it is killed
Watch = Callable[[int, float], bool]  # (round, score) -> stop the job now?


class TrialFailed(RuntimeError):
    """A trial's job failed or gave no score for an objective; the message says where its log is."""


class TrialInterrupted(TrialFailed):
    """A trial's job was stopped from outside (it checkpointed after a signal and exited with code 3)."""


class TrialStopped(RuntimeError):
    """A watched trial's job was stopped on its per-round scores (the study records it as pruned)."""


def write_job(study: Study, number: int, values: dict[str, Any]) -> Path:
    """Write trial `number`'s job file (the base job with `values` set, its own run file); return its path."""
    folder = study.trial_folder(number)
    folder.mkdir(parents=True, exist_ok=True)
    job = yaml.safe_load(yaml.safe_dump(study.base))  # a deep copy of plain data
    for key, value in values.items():
        set_option(job, key, value)
    job["output"], job["progress"] = str((folder / "run.h5").resolve()), False
    if study.prune is not None and study.prune.every is not None:
        set_option(job, "evaluation.every", study.prune.every)
    if study.validation > 0:
        set_option(job, "data.validation", study.validation)
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
    return path


def run_command(study: Study, job: Path, srun: bool = False) -> list[str]:
    """`hpcsynth run job.yaml`, under `mpiexec -n K` (or `srun --mpi=pmi2 -n K` inside a SLURM allocation, `srun`)
    when the job has more than one rank."""
    launcher = ["srun", "--mpi=pmi2", "-n", str(study.ranks)] if srun else [mpiexec(), "-n", str(study.ranks)]
    return [*(launcher if study.ranks > 1 else []), *CLI, "run", str(job)]


def _run(command: list[str], log: Path, what: str) -> None:
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    _check(code, what, log)


def _check(code: int, what: str, log: Path) -> None:
    if code == 3:
        raise TrialInterrupted(f"{what} was stopped by a signal and checkpointed (exit code 3; log: {log})")
    if code != 0:
        raise TrialFailed(f"{what} exited with code {code} (log: {log})")


def round_scores(partial: Path, column: str) -> list[tuple[int, float]]:
    """The (round, score) pairs of `column` in a partial run file's `/rounds`, rounds not scored left out; empty
    while there is no file or no such column yet."""
    try:
        with h5py.File(partial, "r") as f:
            rounds = f["rounds"][()]
    except (OSError, KeyError):
        return []
    if column not in (rounds.dtype.names or ()):
        return []
    return [(int(r["round"]), float(r[column])) for r in rounds if np.isfinite(r[column])]


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    return children


def job_ranks(pid: int) -> list[int]:
    """The ranks of the job started as `pid`: the process itself for a one-process job, else the processes
    under its launcher that run `python -m hpcsynth.cli` (MPICH's ranks run in sessions of their own, so a
    signal to the launcher's process group does not reach them)."""
    tree, todo, found = _children(), [pid], []
    while todo:
        current = todo.pop()
        try:
            argv = Path(f"/proc/{current}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:3] == [b"-m", b"hpcsynth.cli"]:
            found.append(current)
        todo.extend(tree.get(current, []))
    return found


def stop_job(process: subprocess.Popen) -> int:
    """SIGTERM to the job's ranks (to its process group when none is found yet); SIGKILL to the group when it
    has not exited after STOP_WAIT_S. Return its exit code."""
    targets = job_ranks(process.pid)
    for pid in targets:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    if not targets:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        return process.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        for pid in [*job_ranks(process.pid), process.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return process.wait()


def _run_watched(command: list[str], log: Path, what: str, partial: Path, column: str, watch: Watch) -> None:
    """Run the job, handing each new per-round score of `column` to `watch`; stop the job when it says so."""
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        reported, stopped = -1, None
        try:
            while stopped is None and process.poll() is None:
                for step, value in round_scores(partial, column):
                    if step > reported:
                        reported = step
                        if watch(step, value):
                            stopped = step
                            break
                if stopped is None:
                    time.sleep(POLL_S)
        except BaseException:
            stop_job(process)
            raise
        code = stop_job(process) if stopped is not None else process.wait()
    if stopped is not None:
        raise TrialStopped(f"{what} stopped after round {stopped + 1} on its {column} {value:.4g} "
                           f"(exit code {code}; log: {log})")
    _check(code, what, log)


def read_scores(run: Path) -> dict[str, float]:
    """The run file's stored scores, with `epsilon`: the largest privacy spent by any site, where DP was on."""
    with h5py.File(run, "r") as f:
        stored = read_evaluation(f)
        scores = dict(stored.scores) if stored is not None else {}
        if "privacy" in f:
            scores[PRIVACY_SPENT] = float(max(f["privacy"].attrs["epsilon_spent"]))
    return scores


def run_trial(study: Study, number: int, values: dict[str, Any], watch: Watch | None = None,
              srun: bool = False) -> dict[str, float]:
    """Run trial `number` with `values` and return its objectives; TrialFailed when it cannot be scored
    (TrialInterrupted when its job was stopped by a signal).

    With `watch`, each per-round score of the first objective goes to `watch(round, score)` as the job writes
    it, and the job is stopped when `watch` returns True (TrialStopped). `srun`: start the ranks with `srun`
    (the caller runs inside a SLURM allocation of at least the job's ranks)."""
    job = write_job(study, number, values)
    run, log = job.with_name("run.h5"), job.with_name("log.txt")
    command = run_command(study, job, srun)
    if watch is None:
        _run(command, log, f"trial {number}")
    else:
        _run_watched(command, log, f"trial {number}", partial_path(run), next(iter(study.objectives)), watch)
    scores = read_scores(run)
    missing = [name for name in study.objectives if name not in scores and name != PRIVACY_SPENT]
    if missing:
        _run([*CLI, "evaluate", str(run), "--out", str(job.with_name("report.html"))], log, f"trial {number} evaluate")
        scores = read_scores(run)
    absent = [name for name in study.objectives if name not in scores]
    if absent:
        raise TrialFailed(f"trial {number}: no {', '.join(absent)} in {run} (log: {log})")
    return {name: scores[name] for name in study.objectives}
