"""`hpcsynth tune` end to end: a tiny study of two-site FedAvg jobs under real mpiexec, run as two worker
processes sharing one journal; its study file, its front, resuming it, a failing trial, and bad study files.
The budget (interrupted trials do not count), a worker stopped by SIGTERM as an array task is, the HTML report.
Pruning: a trial's job stopped on its per-round score and recorded as pruned. IORBO: the mean-rank
scalarisation by hand, its sampler, and a tiny study with `sampler: iorbo`."""
from __future__ import annotations

import base64
import io
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

import hpcsynth
from hpcsynth.cli import main
from hpcsynth.federated.records import RoundRecord
from hpcsynth.io.inspect import describe
from hpcsynth.io.study import read_trials
from hpcsynth.messages import ConfigError
from hpcsynth.submit import JobSpec
from hpcsynth.tune import search
from hpcsynth.tune.cluster import task_spec
from hpcsynth.tune.iorbo import IORBOSampler, distribution, mean_ranks
from hpcsynth.tune.report import MIN_FANOVA, importances, report_from_file, write_study_report
from hpcsynth.tune.results import trials_table, write_results
from hpcsynth.tune.search import (
    ERROR,
    INTERRUPTED,
    claim,
    core_share,
    fail_stale,
    open_study,
    pruner,
    quotas,
    remaining,
    run_local,
    start_on,
    work,
)
from hpcsynth.tune.study_file import Param, load_study
from hpcsynth.tune.trial import round_scores

CLI = [sys.executable, "-m", "hpcsynth.cli"]
JOB = {"seed": 0, "data": {"builtin": "mds", "n_patients": 200, "holdout": 0.2, "n_sites": 2},
       "model": {"name": "tvae", "batch_size": 50, "hidden": [16, 16], "latent_dim": 4},
       "federation": {"strategy": "fedavg", "rounds": 1, "local_epochs": 1}, "output": "unused.h5"}
ONE_SITE = {**JOB, "data": {"builtin": "mds", "n_patients": 200, "holdout": 0.2, "n_sites": 1},
            "federation": {"strategy": "centralized", "rounds": 1, "local_epochs": 1}}
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
    path = write(tmp_path_factory.mktemp("study"), {**STUDY, "trials": 2, "validation": 0.25})
    done = tune(path, "--parallel", "2")
    assert done.returncode == 0, done.stderr
    with h5py.File(path.with_name("study.h5")) as f:
        before = read_trials(f)
    stamps = {row["number"]: Path(row["run"]).stat().st_mtime_ns for _, row in before.iterrows()}
    path.write_text(yaml.safe_dump({**STUDY, "trials": 3, "validation": 0.25}), encoding="utf-8")
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
        assert job["data"]["validation"] == 0.25  # scored on a validation share of the training rows
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
    assert "validation" not in yaml.safe_load(best_job)["data"]  # ready to run: judged on the held-out rows
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
    ({"sampler": "bayes"}, "sampler: expected one of tpe, nsga2, iorbo"),
    ({"objectives": ["quality"], "sampler": "iorbo"}, "sampler: iorbo ranks trials over several objectives"),
    ({"prune": {"every": 1}}, "prune: Optuna prunes single-objective studies, and this one has 2 objectives"),
    ({"objectives": ["wasserstein"], "prune": {"every": 1}}, "prune: the objective wasserstein has no per-round"),
    ({"objectives": ["quality"], "prune": {}}, "prune.every: the job scores its release after the last round"),
    ({"objectives": ["quality"], "prune": {"after": 2}}, "prune.after: unknown option"),
    ({"objectives": ["quality"], "prune": {"every": 1, "pruner": "hyperband"}}, "prune.pruner: expected one of"),
    ({"objectives": ["quality"], "prune": {"every": 1, "pruner": "percentile", "percentile": 150}},
     "prune.percentile: must be in (0, 100)"),
    ({"objectives": ["quality"], "prune": {"every": 1, "lower": 0.5}}, "prune.lower: only for pruner: threshold"),
    ({"objectives": ["quality"], "prune": {"every": 1, "pruner": "threshold"}}, "prune.lower: the threshold pruner"),
    ({"objectives": ["quality"], "prune": {"every": 0}}, "prune.every: must be at least 1"),
    ({"validation": 1.0}, "validation: must be in [0, 1)"),
    ({"objectives": ["quality"], "prune": {"every": 1, "warmup": -1}}, "prune.warmup: must be at least 0"),
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


def test_the_cores_are_split_over_the_workers(monkeypatch):
    monkeypatch.setattr(search.os, "sched_getaffinity", lambda pid: {4, 5, 6, 7, 8})
    assert [core_share(k, 2) for k in range(2)] == [{4, 5, 6}, {7, 8}]
    assert [core_share(k, 5) for k in range(5)] == [{4}, {5}, {6}, {7}, {8}]
    assert [core_share(k, 7) for k in range(7)] == [{4}, {5}, {6}, {7}, {8}, {4}, {5}]


def test_a_worker_starts_on_its_share_of_the_cores(tmp_path):
    """Its children (the trials' jobs, which size their threads from it) inherit the affinity."""
    cores = {sorted(os.sched_getaffinity(0))[-1]}
    command = [sys.executable, "-c", "import os, subprocess, sys; subprocess.run([sys.executable, '-c', "
               "'import os; print(sorted(os.sched_getaffinity(0)))'])"]
    assert start_on(command, tmp_path / "log", cores).wait() == 0
    assert (tmp_path / "log").read_text().strip() == str(sorted(cores))


def test_the_prune_section_gives_the_configured_pruner(tmp_path):
    def built(prune: dict | None) -> optuna.pruners.BasePruner:
        change = {"objectives": ["quality"]} if prune is None else {"objectives": ["quality"], "prune": prune}
        return pruner(load_study(write(tmp_path, {**STUDY, **change})))

    assert isinstance(built(None), optuna.pruners.NopPruner)
    assert isinstance(built({"every": 2, "pruner": "none"}), optuna.pruners.NopPruner)
    median = built({"every": 2, "startup": 3, "warmup": 1})
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (3, 1)
    percentile = built({"every": 2, "pruner": "percentile", "percentile": 10, "startup": 1})
    assert isinstance(percentile, optuna.pruners.PercentilePruner) and percentile._percentile == 10
    threshold = built({"every": 2, "pruner": "threshold", "lower": 0.5})
    assert isinstance(threshold, optuna.pruners.ThresholdPruner) and threshold._lower == 0.5


def test_round_scores_reads_the_scored_rounds_of_a_partial_file(tmp_path):
    records = [RoundRecord(r, 1.0, 0.1, 0.1, 0.0, 0, 1, scores={"quality": 0.5 + r / 10} if r % 2 else {})
               for r in range(4)]
    partial = tmp_path / "run.partial.h5"
    assert round_scores(partial, "quality") == []  # no file yet
    with h5py.File(partial, "w") as f:
        f.create_dataset("rounds", data=RoundRecord.table(records))
    assert round_scores(partial, "quality") == [(1, pytest.approx(0.6)), (3, pytest.approx(0.8))]
    assert round_scores(partial, "detection_auroc") == []  # not a column (yet)


@pytest.mark.slow
@pytest.mark.parametrize("base, strategy", [
    (ONE_SITE, "centralized"),  # one process
    pytest.param(JOB, "fedavg", marks=pytest.mark.mpi),  # mpiexec -n 2: the ranks get the SIGTERM
])
def test_pruning_stops_a_trials_job_early_and_records_it_pruned(tmp_path, base, strategy):
    """The threshold pruner stops any trial whose quality is below 0.999 at its first report: the job, set to
    40 rounds, is stopped after its first scored round, checkpoints and exits 3; the trial is PRUNED."""
    job = {**base, "federation": {"strategy": strategy, "rounds": 40, "local_epochs": 1}}
    prune = {"pruner": "threshold", "lower": 0.999, "every": 1}
    study = load_study(write(tmp_path, {**STUDY, "objectives": ["quality"], "trials": 1, "parallel": 1,
                                        "prune": prune}, job))
    shared = open_study(study, create=True)
    work(study, 1, worker=0)
    trial = shared.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [0]
    folder = study.trial_folder(0)
    assert yaml.safe_load((folder / "job.yaml").read_text())["evaluation"]["every"] == 1
    assert not (folder / "run.h5").exists()
    with h5py.File(folder / "run.partial.h5") as f:  # what the stopped job left: a checkpoint, far from the end
        assert f.attrs["status"] == "partial" and f["checkpoint"].attrs["round"] < 39
        assert f["rounds"]["quality"][0] == pytest.approx(trial.intermediate_values[0])
    assert "stopped by SIGTERM" in (folder / "log.txt").read_text()
    write_results(study, shared)
    with h5py.File(tmp_path / "study.h5") as f:
        table = read_trials(f)
        assert list(table["state"]) == ["PRUNED"] and list(f["front"][()]) == [] and "best" not in f
    assert table["quality"][0] == pytest.approx(trial.intermediate_values[0])  # its last reported score


def test_mean_rank_of_a_hand_worked_example():
    # quality (higher better): 0.8, 0.6, 0.7 -> ranks 1, 3, 2; detection AUROC (lower better): 0.6, 0.55, 0.7
    # -> ranks 2, 1, 3; mean ranks 1.5, 2.0, 2.5
    values = [[0.8, 0.6], [0.6, 0.55], [0.7, 0.7]]
    np.testing.assert_allclose(mean_ranks(values, [True, False]), [1.5, 2.0, 2.5])
    # ties share their average rank: quality 0.5, 0.5, 0.9 -> 2.5, 2.5, 1
    np.testing.assert_allclose(mean_ranks([[0.5, 0.6], [0.5, 0.55], [0.9, 0.7]], [True, False]), [2.25, 1.75, 2.0])
    assert mean_ranks([], [True, False]).shape == (0,)


def test_the_iorbo_sampler_recomputes_the_ranks_and_proposes_by_tpe(monkeypatch):
    params = [Param("model.lr", "log_float", [1e-4, 1e-2]), Param("model.batch_size", "int", [20, 80]),
              Param("model.name", "choice", ["tvae", "ctgan"])]
    sampler = IORBOSampler(params, [True, False], seed=3)
    monkeypatch.setattr(sampler, "sample_independent", lambda *a: pytest.fail("a value not from the TPE"))
    shared = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    scores = iter([(0.8, 0.6), (0.6, 0.55), (0.7, 0.7), (0.9, 0.5)])

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        trial.suggest_float("model.lr", 1e-4, 1e-2, log=True)
        trial.suggest_int("model.batch_size", 20, 80)
        trial.suggest_categorical("model.name", ["tvae", "ctgan"])
        return next(scores)

    shared.optimize(objective, n_trials=3)
    assert [t.value for t in sampler.scalarised(shared)] == [1.5, 2.0, 2.5]
    shared.optimize(objective, n_trials=1)  # best on both: every older trial moves down a rank
    assert [t.value for t in sampler.scalarised(shared)] == [2.5, 3.0, 3.5, 1.0]
    assert len({t.params["model.lr"] for t in shared.trials}) == 4


@pytest.mark.slow
def test_a_tiny_iorbo_study_completes_and_chooses_the_lowest_mean_rank(tmp_path):
    study = load_study(write(tmp_path, {**STUDY, "sampler": "iorbo", "trials": 3, "parallel": 1}, ONE_SITE))
    shared = open_study(study, create=True)
    work(study, 3, worker=0)
    write_results(study, shared)
    with h5py.File(tmp_path / "study.h5") as f:
        table = read_trials(f).set_index("number")
        best, by = int(f["best"].attrs["number"]), f["best"].attrs["chosen_by"]
        front = list(f["front"][()])
    assert set(table["state"]) == {"COMPLETE"} and len(table) == 3
    want = mean_ranks(table[["quality", "detection_auroc"]].to_numpy(), [True, False])
    np.testing.assert_allclose(table["mean_rank"], want)
    assert best == table["mean_rank"].idxmin() and by == "the lowest mean rank" and best in front
    assert "by the lowest mean rank" in describe(tmp_path / "study.h5")


def _filled(tmp_path: Path, objectives: list[str], completed: int, failed: int = 0) -> tuple:
    """A study whose journal holds `completed` trials (quality rises with the batch size alone; detection AUROC
    falls with it) and `failed` trials whose jobs failed: the trials told as a worker tells them, no job run."""
    study = load_study(write(tmp_path, {**STUDY, "objectives": objectives}))
    shared = open_study(study, create=True)
    spaces = {p.key: distribution(p) for p in study.params}
    rng = np.random.default_rng(0)
    for _ in range(completed):
        params = {"model.batch_size": int(rng.integers(20, 81)), "model.lr": float(10 ** rng.uniform(-4, -2))}
        quality = 0.3 + params["model.batch_size"] / 100
        values = {"quality": quality, "detection_auroc": 1.2 - quality}
        shared.add_trial(optuna.trial.create_trial(params=params, distributions=spaces,
                                                   values=[values[o] for o in objectives]))
    for _ in range(failed):
        shared.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                                   user_attrs={ERROR: "trial exited with code 1"}))
    return study, shared


def _images(report: Path) -> dict[str, tuple[int, int]]:
    """The report's embedded PNGs by their alt text, each decoded (it must be a valid PNG) to its size."""
    from PIL import Image

    found = {}
    for alt, source in re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)"', report.read_text()):
        data = base64.b64decode(source)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        image = Image.open(io.BytesIO(data))
        image.load()
        found[alt] = image.size
    return found


def test_the_report_draws_objectives_front_and_fanova_importances(tmp_path):
    study, shared = _filled(tmp_path, ["quality", "detection_auroc"], completed=16, failed=1)
    report = write_study_report(study, shared)
    assert report == tmp_path / "study.html"
    images = _images(report)
    assert set(images) == {"objectives", "Pareto front", "parameter importances"}
    assert all(w > 200 and h > 150 for w, h in images.values())
    text = report.read_text()
    assert "17 trials (16 COMPLETE, 1 FAIL) of a budget of 3" in text and "Front (Pareto-optimal trials)" in text
    found, missing = importances(study, shared)  # quality and detection AUROC depend on the batch size alone
    assert set(found) == {"quality", "detection_auroc"} and missing == {}
    assert all(shares["model.batch_size"] > 0.9 for shares in found.values())


def test_the_report_says_why_there_are_no_importances_or_front(tmp_path):
    study, shared = _filled(tmp_path, ["quality"], completed=MIN_FANOVA - 1)
    report = write_study_report(study, shared, tmp_path / "few.html")
    assert set(_images(report)) == {"objectives"}
    text = report.read_text()
    assert f"fANOVA needs at least {MIN_FANOVA} completed trials" in text and "this study has 4" in text
    assert "One objective: the front is the best trial." in text


def test_the_report_notes_an_objective_that_does_not_vary_instead_of_failing(tmp_path):
    study, shared = _filled(tmp_path / "varies", ["quality"], completed=MIN_FANOVA)
    flat = load_study(write(tmp_path / "flat", {**STUDY, "objectives": ["quality", "detection_auroc"]}))
    constant = open_study(flat, create=True)
    for trial in shared.trials:  # the same parameters; detection AUROC the same in every trial
        constant.add_trial(optuna.trial.create_trial(params=trial.params, distributions=trial.distributions,
                                                     values=[trial.value, 0.5]))
    found, missing = importances(flat, constant)
    assert set(found) == {"quality"} and "fANOVA could not fit detection_auroc" in missing["detection_auroc"]
    report = write_study_report(flat, constant)
    assert set(_images(report)) == {"objectives", "Pareto front", "parameter importances"}
    assert "fANOVA could not fit detection_auroc" in report.read_text()


def _concluded(tmp_path: Path) -> Path:
    """The study file of `_filled`'s 16 completed trials and one failed, each trial with its job file as a worker
    leaves it; its path."""
    study, shared = _filled(tmp_path, ["quality", "detection_auroc"], completed=16, failed=1)
    for trial in shared.trials:
        folder = study.trial_folder(trial.number)
        folder.mkdir(parents=True)
        (folder / "job.yaml").write_text(yaml.safe_dump({**JOB, "model": {**JOB["model"], **trial.params}}))
    return write_results(study, shared)


def test_inspect_prints_a_study_files_trials_front_and_best(tmp_path, capsys):
    path = _concluded(tmp_path)
    main(["inspect", str(path)])
    lines = capsys.readouterr().out.splitlines()
    with h5py.File(path) as f:
        front, best = list(f["front"][()]), int(f["best"].attrs["number"])
    assert lines[0] == f"{path}: hpcsynth study file, version {hpcsynth.__version__}"
    assert lines[1] == "objectives: quality (higher is better), detection_auroc (lower is better)"
    assert lines[2] == "trials: 17 (16 COMPLETE, 1 FAIL)"
    assert lines[3].split() == ["number", "state", "interrupted", "model.batch_size", "model.lr", "quality",
                                "detection_auroc"]
    assert [line.split()[:2] for line in lines[4:21]] == [[str(n), "COMPLETE"] for n in range(16)] + [["16", "FAIL"]]
    assert lines[21] == "front (Pareto-optimal trials): " + ", ".join(map(str, front))
    assert lines[22].startswith(f"best: trial {best} (by the first objective), run file ") and len(lines) == 23
    assert not list(tmp_path.glob("*.html"))  # no report without --report


def test_inspect_report_writes_the_study_report_with_its_plots_from_the_journal(tmp_path, capsys):
    path = _concluded(tmp_path)
    out = tmp_path / "elsewhere" / "report.html"
    main(["inspect", str(path), "--report", str(out)])
    printed = capsys.readouterr().out
    assert "trials: 17 (16 COMPLETE, 1 FAIL)" in printed and printed.endswith(f"report: {out}\n")
    images = _images(out)
    assert set(images) == {"objectives", "Pareto front", "parameter importances"}
    assert all(w > 200 and h > 150 for w, h in images.values())
    assert "17 trials (16 COMPLETE, 1 FAIL) of a budget of 3" in out.read_text()


def test_inspect_report_refuses_a_run_file_and_a_study_without_its_journal(tmp_path):
    run = tmp_path / "run.h5"
    with h5py.File(run, "w") as f:
        f.attrs["kind"] = "run"
    with pytest.raises(ConfigError, match="not a study file"):
        report_from_file(run, tmp_path / "run.html")
    path = _concluded(tmp_path / "study")
    (tmp_path / "study" / "study" / "journal.log").unlink()
    with pytest.raises(ConfigError, match="journal .* is gone"):
        report_from_file(path, tmp_path / "study.html")


def test_the_budget_counts_running_and_ended_trials_but_not_interrupted_ones(tmp_path):
    study, shared = _filled(tmp_path, ["quality"], completed=1, failed=1)  # budget 3: 2 used
    assert remaining(study, shared) == 1
    running = claim(study, shared)
    assert running is not None and remaining(study, shared) == 0 and claim(study, shared) is None
    assert fail_stale(shared) == [running.number]  # its worker was lost: failed, and its place is free again
    assert remaining(study, shared) == 1
    interrupted = claim(study, shared)
    interrupted.set_user_attr(INTERRUPTED, "SIGTERM while its job ran")
    shared.tell(interrupted, state=optuna.trial.TrialState.FAIL)
    assert remaining(study, shared) == 1
    table = trials_table(study, shared).set_index("number")
    assert list(table["interrupted"]) == [False, False, True, True]


def test_a_task_allocation_smaller_than_a_trial_is_refused(tmp_path):
    study = load_study(write(tmp_path))  # two sites: two ranks per trial
    with pytest.raises(ConfigError, match="a trial runs 2 ranks .* but a task asks for 1"):
        task_spec(study, JobSpec(ntasks_per_node=1))
    assert task_spec(study, JobSpec(ntasks_per_node=2)).script().count("hpcsynth tune \"$study\" --worker") == 1


def test_tune_needs_local_or_submit_and_wait_only_with_submit(tmp_path, capsys):
    path = write(tmp_path)
    for extra, said in ([[], "give --local"], [["--local", "--submit"], "give --local"],
                        [["--local", "--wait"], "--wait waits for the array"]):
        with pytest.raises(SystemExit) as exit_:
            main(["tune", str(path), *extra])
        assert exit_.value.code == 2 and said in capsys.readouterr().err


@pytest.mark.slow
def test_a_worker_stopped_by_sigterm_records_its_trial_interrupted_and_exits_3(tmp_path):
    """A local worker (the process an array task runs) gets SIGTERM while its trial's job runs, as `scancel`
    sends it: the job is stopped, the trial is FAIL and interrupted (not counted), the worker exits with 3."""
    job = {**ONE_SITE, "federation": {"strategy": "centralized", "rounds": 200, "local_epochs": 1}}
    study = load_study(write(tmp_path, {**STUDY, "objectives": ["quality"], "trials": 1, "parallel": 1}, job))
    open_study(study, create=True)
    worker = subprocess.Popen([*CLI, "tune", str(study.source), "--worker"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    partial = study.trial_folder(0) / "run.partial.h5"
    deadline = time.monotonic() + 120
    while not partial.exists() and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert partial.exists(), "the trial's job never wrote its first round"
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 3, output
    trial = open_study(study).trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL and "SIGTERM" in trial.user_attrs[INTERRUPTED]
    assert remaining(study, open_study(study)) == 1
