"""A worker process of a study: it opens the shared journal and runs trials (`hpcsynth.tune.search.work`).

`python -m hpcsynth.tune.worker STUDY.yaml --quota Q --index K` is one of `--local`'s processes, with its share
of the budget. Each task of a study's SLURM array runs `hpcsynth tune STUDY.yaml --worker` (`serve`), which
runs trials until the budget is used up, starting each trial's ranks with `srun` inside the task's allocation.

SLURM stops a task with a signal: SIGTERM when it is cancelled (`scancel`) or preempted, SIGUSR1 before its
time limit (`--signal` in the template). While a trial's job runs, such a signal stops the job and the worker
records the trial as failed and interrupted (it does not use up the budget), then exits with code 3, the
project's code for "stopped by a signal": the template requeues the task, whose next attempt goes on with the
study. A signal between trials stops the worker before its next trial.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hpcsynth.tune.search import work
from hpcsynth.tune.study_file import load_study
from hpcsynth.tune.trial import TrialInterrupted

STOPPED = 3  # the exit code of a worker stopped by a signal (as `hpcsynth run`'s after its checkpoint)
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class Signalled(BaseException):
    """The worker got a stopping signal (a BaseException, so that nothing on the way catches it as an error)."""


class Stop:
    """The stopping signals: raised as `Signalled` while a trial's job runs, remembered in between."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._armed = False

    def install(self) -> None:
        for number in SIGNALS:
            signal.signal(number, self._handle)

    def _handle(self, number: int, frame: object) -> None:
        self.received = signal.Signals(number).name
        if self._armed:
            self._armed = False
            raise Signalled(f"{self.received} while its job ran")

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run a trial's job so that a stopping signal ends it (one that came before it starts ends it too)."""
        if self.received is not None:
            raise Signalled(f"{self.received} before its job started")
        self._armed = True
        try:
            yield
        finally:
            self._armed = False


def task_name() -> str:
    """The SLURM array task this process runs in (`<array job id>_<task id>`), or the job id; '' outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "")


def serve(path: str | Path, quota: int | None = None, index: int | None = None) -> int:
    """Run the study's trials in this process, stopping on SIGTERM/SIGUSR1/SIGINT; return the exit code (0, or
    STOPPED when a signal, or a trial's job stopped by one, ended the worker). Inside a SLURM allocation the
    trials' ranks start with `srun` and the index is the array task's."""
    study = load_study(path)
    task = task_name()
    if index is None:
        index = int(os.environ.get("SLURM_ARRAY_TASK_ID", 0))
    stop = Stop()
    stop.install()
    try:
        work(study, quota, index, srun=bool(task), task=task, guard=stop.guard)
    except (Signalled, TrialInterrupted) as err:
        print(f"hpcsynth tune: worker {task or index} stopped: {err}", file=sys.stderr, flush=True)
        return STOPPED
    return 0


def main(argv: list[str] | None = None) -> None:
    """`python -m hpcsynth.tune.worker STUDY.yaml [--quota Q] [--index K]`."""
    parser = argparse.ArgumentParser(prog="python -m hpcsynth.tune.worker")
    parser.add_argument("study")
    parser.add_argument("--quota", type=int, help="run at most this many trials (default: until the budget)")
    parser.add_argument("--index", type=int, help="the worker's index (seeds its sampler)")
    args = parser.parse_args(argv)
    sys.exit(serve(args.study, args.quota, args.index))


if __name__ == "__main__":
    main()
