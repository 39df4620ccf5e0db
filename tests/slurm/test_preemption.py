"""Preemption on the real local cluster: a job stopped mid-training goes back into the queue and its next
attempt continues from the checkpoint (`hpcsynth run --resume` in the template) to a complete run file."""
from __future__ import annotations

import subprocess

import h5py
import numpy as np
import pytest

from hpcsynth.io.runfile import partial_path
from tests.slurm.conftest import REPO, checkpoint_round, run_cli, wait_for

ROUNDS = 60


def _rounds(path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["rounds"][()]


@pytest.mark.parametrize("preempt", [
    # SLURM's warning before the time limit (--signal=USR1@120 in the template), sent now: every rank
    # checkpoints and exits with code 3, and the batch script requeues its own job
    ["scancel", "--signal=USR1"],
    # the scheduler (or an admin) requeues the job: SLURM stops it and puts it back in the queue
    ["scontrol", "requeue"],
], ids=["sigusr1-self-requeue", "scontrol-requeue"])
def test_a_preempted_job_resumes_from_its_checkpoint_and_finishes(slurm_job, tmp_path, preempt):
    job = slurm_job({"federation.rounds": ROUNDS, "federation.local_epochs": 3})
    sbatch = subprocess.run(["sbatch", "--parsable", str(REPO / "slurm" / "cpu.sbatch"), str(job)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert sbatch.returncode == 0, sbatch.stderr
    job_id = sbatch.stdout.strip()
    out = tmp_path / "runs" / "job.h5"
    wait_for(lambda: checkpoint_round(partial_path(out)) >= 1, 150, "the first checkpoints")
    before = _rounds(partial_path(out))
    done = subprocess.run([*preempt, job_id], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr

    status = run_cli(["status", job_id, "--wait", "--timeout", "200"], cwd=tmp_path, timeout=240)
    log = (tmp_path / f"slurm-hpcsynth-{job_id}.out").read_text()
    assert status.returncode == 0, status.stdout + status.stderr + log
    assert status.stdout.strip().splitlines()[-1] == f"{job_id} COMPLETED (restarts 1)"
    assert "attempt 2" in log
    after = _rounds(out)
    assert len(before) < ROUNDS
    np.testing.assert_array_equal(after["round"], np.arange(ROUNDS))
    # the rounds before the preemption were not run again: their records (wall times to the nanosecond)
    # are the ones the first attempt checkpointed
    np.testing.assert_array_equal(after[:len(before)], before)
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete"
