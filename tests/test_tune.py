"""`hpcsynth tune` end to end: a tiny study of two-site FedAvg jobs under real mpiexec, run as two worker
processes sharing one journal; its study file, its front, resuming it, a failing trial, and bad study files."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from hpcsynth.cli import main
from hpcsynth.io.inspect import describe
from hpcsynth.io.study import read_trials
from hpcsynth.messages import ConfigError
from hpcsynth.tune.results import write_results
from hpcsynth.tune.search import open_study, quotas, run_local, work
from hpcsynth.tune.study_file import load_study

CLI = [sys.executable, "-m", "hpcsynth.cli"]
JOB = {"seed": 0, "data": {"builtin": "mds", "n_patients": 200, "holdout": 0.2, "n_sites": 2},
       "model": {"name": "tvae", "batch_size": 50, "hidden": [16, 16], "latent_dim": 4},
       "federation": {"strategy": "fedavg", "rounds": 1, "local_epochs": 1}, "output": "unused.h5"}
STUDY = {"job": "job.yaml", "space": {"model.batch_size": {"int": [20, 80]}, "model.lr": {"log_float": [1e-4, 1e-2]}},
         "objectives": ["quality", "detection_auroc"], "trials": 3, "parallel": 2, "output": "study.h5"}


def write(folder: Path, study: dict | None = None, job: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.yaml").write_text(yaml.safe_dump(job or JOB), encoding="utf-8")
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study or STUDY), encoding="utf-8")
    return path


def tune(study: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*CLI, "tune", str(study), "--local", *extra], capture_output=True, text=True,
                          timeout=300, env=env)


@dataclass
class Finished:
    """The study after two trials (two workers at once) and after `--resume` with a budget of three."""

    path: Path
    before: pd.DataFrame
    stamps: dict[int, int]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Finished:
    path = write(tmp_path_factory.mktemp("study"), {**STUDY, "trials": 2})
    done = tune(path, "--parallel", "2")
    assert done.returncode == 0, done.stderr
    with h5py.File(path.with_name("study.h5")) as f:
        before = read_trials(f)
    stamps = {row["number"]: Path(row["run"]).stat().st_mtime_ns for _, row in before.iterrows()}
    path.write_text(yaml.safe_dump({**STUDY, "trials": 3}), encoding="utf-8")
    resumed = load_study(path)  # what `hpcsynth tune --resume` does, in this process (one interpreter start less)
    assert run_local(resumed, resume=True) == []
    write_results(resumed, open_study(resumed))
    return Finished(path, before, stamps)


def dominated(a: np.ndarray, b: np.ndarray) -> bool:
    """a is dominated by b (quality higher is better, detection AUROC lower is better)."""
    better_or_equal = b[0] >= a[0] and b[1] <= a[1]
    return better_or_equal and (b[0] > a[0] or b[1] < a[1])


@pytest.mark.mpi
@pytest.mark.slow
def test_study_file_has_every_trial_with_its_run_file_and_values(study):
    with h5py.File(study.path.with_name("study.h5")) as f:
        assert f.attrs["kind"] == "study"
        table = read_trials(f)
        assert "job.yaml" in f["study"][()].decode()
    assert sorted(table["number"]) == [0, 1, 2] and set(table["state"]) == {"COMPLETE"}
    assert table["model.batch_size"].between(20, 80).all() and table["model.lr"].between(1e-4, 1e-2).all()
    for _, row in table.iterrows():
        assert Path(row["run"]).is_file()
        job = yaml.safe_load(Path(row["run"]).with_name("job.yaml").read_text())
        assert job["model"]["batch_size"] == row["model.batch_size"] and job["model"]["lr"] == row["model.lr"]
        with h5py.File(row["run"]) as run:
            assert run.attrs["n_sites"] == 2  # run under mpiexec -n 2, one rank per site
            assert run["evaluation"].attrs["quality"] == pytest.approx(row["quality"])


@pytest.mark.mpi
@pytest.mark.slow
def test_front_is_the_non_dominated_trials_and_best_is_a_runnable_job(study):
    with h5py.File(study.path.with_name("study.h5")) as f:
        table = read_trials(f).set_index("number")
        front = list(f["front"][()])
        best_job, best = f["best"][()].decode(), int(f["best"].attrs["number"])
    scores = {n: table.loc[n, ["quality", "detection_auroc"]].to_numpy(float) for n in table.index}
    assert front and best in front
    for n in scores:
        beaten = any(dominated(scores[n], scores[m]) for m in scores if m != n)
        assert (n in front) == (not beaten)
    assert table.loc[best, "quality"] == max(table.loc[front, "quality"])
    assert yaml.safe_load(best_job)["model"]["batch_size"] == table.loc[best, "model.batch_size"]
    assert "front (Pareto-optimal trials)" in describe(study.path.with_name("study.h5"))


@pytest.mark.mpi
@pytest.mark.slow
def test_resume_adds_trials_up_to_the_budget_without_redoing_old_ones(study):
    with pytest.raises(ConfigError, match="--resume"):  # a second start without --resume is refused
        run_local(load_study(study.path))
    with h5py.File(study.path.with_name("study.h5")) as f:
        after = read_trials(f)
    assert sorted(study.before["number"]) == [0, 1] and sorted(after["number"]) == [0, 1, 2]
    columns = ["number", "model.batch_size", "model.lr", "quality"]
    assert after.iloc[:2][columns].equals(study.before[columns])
    assert all(Path(after.loc[after["number"] == n, "run"].iloc[0]).stat().st_mtime_ns == t
               for n, t in study.stamps.items())


def test_a_failing_trial_is_recorded_as_failed_and_the_study_goes_on(tmp_path):
    job = {**JOB, "data": {"path": str(tmp_path / "missing.csv"), "n_sites": 1},
           "federation": {"strategy": "centralized", "rounds": 1}}
    study = load_study(write(tmp_path, {**STUDY, "trials": 2, "parallel": 1}, job))
    shared = open_study(study, create=True)
    work(study, 2, worker=0)  # in this process: the CLI's worker does the same (and costs an interpreter start)
    write_results(study, shared)
    with h5py.File(tmp_path / "study.h5") as f:
        table = read_trials(f)
        assert list(f["front"][()]) == [] and "best" not in f
    assert sorted(table["number"]) == [0, 1] and set(table["state"]) == {"FAIL"}
    assert "missing.csv" in (tmp_path / "study" / "trials" / "0" / "log.txt").read_text()


@pytest.mark.parametrize("change, named", [
    ({"trails": 3}, "trails: unknown option"),
    ({"trials": 0}, "trials: must be at least 1"),
    ({"space": {"model.batchsize": {"int": [20, 80]}}}, "space.model.batchsize: not a job key"),
    ({"space": {"model.batch_size": {"int": [80, 20]}}}, "space.model.batch_size.int: an empty range"),
    ({"space": {"model.batch_size": {"int": [1, 20]}}}, "model.batch_size: must be at least 2"),
    ({"space": {"model.lr": {"log_float": [0, 1]}}}, "space.model.lr.log_float: a log range needs low > 0"),
    ({"space": {"model.batch_size": {"range": [1, 2]}}}, "space.model.batch_size: give exactly one of"),
    ({"objectives": ["qualty"]}, "objectives: 'qualty' is not a score"),
    ({"objectives": ["epsilon"]}, "objectives: epsilon is the privacy spent"),
])
def test_a_bad_study_file_is_one_line_naming_the_key(tmp_path, change, named):
    path = write(tmp_path, {**STUDY, **change})
    with pytest.raises(ConfigError) as err:
        load_study(path)
    assert named in str(err.value) and "\n" not in str(err.value) and str(err.value).startswith(str(path))


def test_the_cli_reports_a_bad_study_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["tune", str(write(tmp_path, {**STUDY, "space": {"model.nope": {"int": [1, 2]}}})), "--local"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.strip().count("\n") == 0 and "space.model.nope" in err


def test_the_budget_is_split_over_the_workers_evenly():
    assert quotas(5, 2) == [3, 2] and quotas(1, 4) == [1] and quotas(0, 2) == []
