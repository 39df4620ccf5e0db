"""One trial: the base job with the trial's values set, run as a normal hpcsynth job, scored from its run file.

The job file goes to `<study folder>/trials/<n>/job.yaml` and writes `run.h5` beside it; it runs as
`mpiexec -n K hpcsynth run` (K the job's ranks: one per site) or, for a one-site job, as one plain process, so a
trial is exactly the job a user would run by hand. Its objectives are read from the run file's `/evaluation`;
one the job does not score is added by `hpcsynth evaluate` on the run file first. Any failure (a non-zero exit,
a missing score) is a `TrialFailed`, which the study records as a failed trial before it goes on.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import yaml

from hpcsynth.io.evaluation import read_evaluation
from hpcsynth.scale import mpiexec
from hpcsynth.submit import set_option
from hpcsynth.tune.study_file import PRIVACY_SPENT, Study

CLI = (sys.executable, "-m", "hpcsynth.cli")


class TrialFailed(RuntimeError):
    """A trial's job failed or gave no score for an objective; the message says where its log is."""


def write_job(study: Study, number: int, values: dict[str, Any]) -> Path:
    """Write trial `number`'s job file (the base job with `values` set, its own run file); return its path."""
    folder = study.trial_folder(number)
    folder.mkdir(parents=True, exist_ok=True)
    job = yaml.safe_load(yaml.safe_dump(study.base))  # a deep copy of plain data
    for key, value in values.items():
        set_option(job, key, value)
    job["output"], job["progress"] = str((folder / "run.h5").resolve()), False
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
    return path


def run_command(study: Study, job: Path) -> list[str]:
    """`hpcsynth run job.yaml`, under `mpiexec -n K` when the job has more than one rank."""
    launcher = [mpiexec(), "-n", str(study.ranks)] if study.ranks > 1 else []
    return [*launcher, *CLI, "run", str(job)]


def _run(command: list[str], log: Path, what: str) -> None:
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise TrialFailed(f"{what} exited with code {code} (log: {log})")


def read_scores(run: Path) -> dict[str, float]:
    """The run file's stored scores, with `epsilon`: the largest privacy spent by any site, where DP was on."""
    with h5py.File(run, "r") as f:
        stored = read_evaluation(f)
        scores = dict(stored.scores) if stored is not None else {}
        if "privacy" in f:
            scores[PRIVACY_SPENT] = float(max(f["privacy"].attrs["epsilon_spent"]))
    return scores


def run_trial(study: Study, number: int, values: dict[str, Any]) -> dict[str, float]:
    """Run trial `number` with `values` and return its objectives; TrialFailed when it cannot be scored."""
    job = write_job(study, number, values)
    run, log = job.with_name("run.h5"), job.with_name("log.txt")
    _run(run_command(study, job), log, f"trial {number}")
    scores = read_scores(run)
    missing = [name for name in study.objectives if name not in scores and name != PRIVACY_SPENT]
    if missing:
        _run([*CLI, "evaluate", str(run), "--out", str(job.with_name("report.html"))], log, f"trial {number} evaluate")
        scores = read_scores(run)
    absent = [name for name in study.objectives if name not in scores]
    if absent:
        raise TrialFailed(f"trial {number}: no {', '.join(absent)} in {run} (log: {log})")
    return {name: scores[name] for name in study.objectives}
