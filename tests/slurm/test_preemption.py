"""Preemption on the real local cluster: a job stopped mid-training goes back into the queue and its next
attempt continues from the checkpoint (`hpcsynth run --resume` in the template) to a complete run file.

One job is preempted twice, both ways SLURM does it: first the warning before the time limit
(`--signal=USR1@120` in the template, sent now with `scancel --signal=USR1`), after which every rank
checkpoints and exits with code 3 and the batch script requeues its own job; then `scontrol requeue`, as the
scheduler or an administrator does, which stops the job and puts it back in the queue.
"""
from __future__ import annotations

import subprocess

import h5py
import numpy as np

from hpcsynth.io.runfile import partial_path
from hpcsynth.submit import job_states
from slurm_support import REPO, checkpoint_round, run_cli, wait_for

ROUNDS = 60


def _rounds(path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["rounds"][()]


def _preempt(command: list[str], job_id: str) -> None:
    done = subprocess.run([*command, job_id], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_a_preempted_job_resumes_from_its_checkpoint_each_time_and_finishes(slurm_job, tmp_path):
    job = slurm_job({"data.n_sites": 2, "federation.rounds": ROUNDS, "federation.local_epochs": 2})
    sbatch = subprocess.run(["sbatch", "--parsable", "--ntasks-per-node=2", str(REPO / "slurm" / "cpu.sbatch"),
                             str(job)], capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert sbatch.returncode == 0, sbatch.stderr
    job_id = sbatch.stdout.strip()
    partial = partial_path(tmp_path / "runs" / "job.h5")

    wait_for(lambda: checkpoint_round(partial) >= 1, 150, "the first checkpoints")
    first = _rounds(partial)
    _preempt(["scancel", "--signal=USR1"], job_id)
    wait_for(lambda: (s := job_states(job_id)[0]).restarts == 1 and s.state == "RUNNING", 120,
             "the self-requeued job to run again")
    stopped_at = checkpoint_round(partial)  # the first attempt's last checkpoint
    wait_for(lambda: checkpoint_round(partial) > stopped_at, 150, "a checkpoint of the second attempt")
    second = _rounds(partial)
    _preempt(["scontrol", "requeue"], job_id)

    status = run_cli(["status", job_id, "--wait", "--timeout", "240"], cwd=tmp_path, timeout=280)
    log = (tmp_path / f"slurm-hpcsynth-{job_id}.out").read_text()
    assert status.returncode == 0, status.stdout + status.stderr + log
    assert status.stdout.strip().splitlines()[-1] == f"{job_id} COMPLETED (restarts 2)"
    assert "checkpointed after a signal; requeueing" in log and "attempt 3" in log
    after = _rounds(tmp_path / "runs" / "job.h5")
    np.testing.assert_array_equal(after["round"], np.arange(ROUNDS))
    # each attempt continued where the last stopped: the records of the rounds before a preemption (wall
    # times to the nanosecond) are the ones that attempt checkpointed, not a rerun
    assert len(first) < len(second) < ROUNDS
    for earlier in (first, second):  # the final table adds the last round's scores as columns
        for name in earlier.dtype.names:
            np.testing.assert_array_equal(after[name][:len(earlier)], earlier[name], err_msg=name)
