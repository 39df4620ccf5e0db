"""A tuning study on the real local cluster: `hpcsynth tune --submit --parallel 4` runs one array of four workers
sharing the study's journal, each trial a two-rank FedAvg job under `srun` inside its task's allocation.

Two tasks are stopped mid-trial, both ways a task dies on a cluster: one is cancelled (`scancel JOB_TASK`: SIGTERM,
so its worker records its trial as failed and interrupted), the other's worker is killed outright (SIGKILL to
its process, as the OOM killer or a lost node ends it: it cannot say anything, so its trial stays RUNNING and
holds its place in the budget). The other workers go on; the array ends one trial short of the budget, and
`--resume --submit --wait` records the lost trial as failed, runs the missing one and writes the study file and
its report.
"""
from __future__ import annotations

import base64
import os
import re
import signal
import subprocess

import h5py
import optuna
import yaml

from hpcsynth.io.study import read_trials
from hpcsynth.submit import wait
from hpcsynth.tune.search import INTERRUPTED, finished, open_study
from hpcsynth.tune.study_file import load_study
from slurm_support import run_cli, wait_for

BUDGET = 5
RUNNING, FAIL = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL


def _running(study) -> list:
    """The trials whose jobs run now (their log shows the `srun` line), with the array task running each."""
    found = []
    for trial in open_study(study).get_trials(deepcopy=False, states=(RUNNING,)):
        log = study.trial_folder(trial.number) / "log.txt"
        if log.is_file() and "srun" in log.read_text():
            found.append(trial)
    return found if len({t.user_attrs["task"] for t in found}) >= 2 else []


def _stop(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_a_study_array_survives_a_cancelled_and_a_killed_task_and_resume_finishes_its_budget(slurm_job, tmp_path):
    slurm_job({"data.n_sites": 2, "data.n_patients": 200, "federation.rounds": 1, "model.batch_size": 50})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"job": "job.yaml", "space": {"model.lr": {"log_float": [1e-4, 2e-2]}},
                                    "objectives": ["quality", "detection_auroc"], "trials": BUDGET,
                                    "output": "study.h5"}))
    study = load_study(path)
    submit = run_cli(["tune", str(path), "--submit", "--parallel", "4"], cwd=tmp_path, timeout=60)
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip()
    rendered = (tmp_path / "study" / "slurm" / f"hpcsynth-{job_id}.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=2" in rendered and "--worker" in rendered

    first, second = wait_for(lambda: _running(study), 150, "the trials of two tasks to start their jobs")[:2]
    cancelled, killed = first.number, second.number
    _stop(["scancel", first.user_attrs["task"]])  # <array id>_<task>
    os.kill(int(second.user_attrs["worker"].split(":")[1]), signal.SIGKILL)
    wait(job_id, timeout=300)

    trials = open_study(study).trials
    assert trials[cancelled].state == FAIL and "SIGTERM" in trials[cancelled].user_attrs[INTERRUPTED]
    assert trials[killed].state == RUNNING  # its worker died without a word
    assert finished(trials) == BUDGET - 1  # the lost trial held its place
    log = (study.trial_folder(trials[0].number) / "log.txt").read_text()
    assert "$ srun --mpi=pmi2 -n 2" in log

    resume = run_cli(["tune", str(path), "--resume", "--submit", "--parallel", "2", "--wait", "--timeout", "200"],
                     cwd=tmp_path, timeout=240)
    assert resume.returncode == 0, resume.stdout + resume.stderr
    assert "report: " in resume.stdout and "front (Pareto-optimal trials)" in resume.stdout
    with h5py.File(tmp_path / "study.h5") as f:
        table = read_trials(f).set_index("number")
        front = list(f["front"][()])
    assert (~table["interrupted"]).sum() == BUDGET and len(table) == BUDGET + 2
    assert table.loc[[cancelled, killed], "state"].eq("FAIL").all()
    assert table["interrupted"].sum() == 2 and table.loc[[cancelled, killed], "interrupted"].all()
    assert front and table.loc[front, "state"].eq("COMPLETE").all()
    for number in table.index[table["state"] == "COMPLETE"]:
        with h5py.File(table.loc[number, "run"]) as run:
            assert run.attrs["n_sites"] == 2
    html = (tmp_path / "study.html").read_text()
    images = dict(re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)"', html))
    assert {"objectives", "Pareto front"} <= set(images)
    assert "parameter importances" in images or "fANOVA could not fit" in html  # tiny jobs may barely differ
    assert all(base64.b64decode(data)[:4] == b"\x89PNG" for data in images.values())
