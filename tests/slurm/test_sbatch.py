"""Submission against the real local cluster: the sbatch template as written, `hpcsynth submit` through
submitit and through sbatch, `hpcsynth status`, and cancellation."""
from __future__ import annotations

import subprocess
from pathlib import Path

import h5py

from hpcsynth.io.runfile import partial_path
from slurm_support import REPO, checkpoint_round, run_cli, wait_for


def _assert_complete_federated_run(path: Path, strategy: str = "fedavg", sites: int = 3) -> None:
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete"
        assert f.attrs["strategy"] == strategy
        assert int(f.attrs["n_sites"]) == sites
        assert sorted(f["synthetic"]) == ["pooled", *[f"site_{k}" for k in range(sites)]]
        assert len(f["rounds"]) == 2
        assert f["rounds"]["bytes_reduced"].min() > 0  # the sites did exchange parameters
    assert not partial_path(path).exists()


def test_cpu_template_as_written_runs_a_three_site_fedavg_job(slurm_job, tmp_path):
    job = slurm_job()
    sbatch = subprocess.run(["sbatch", "--parsable", str(REPO / "slurm" / "cpu.sbatch"), str(job)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert sbatch.returncode == 0, sbatch.stderr
    job_id = sbatch.stdout.strip()
    status = run_cli(["status", job_id, "--wait", "--timeout", "150"], cwd=tmp_path)
    log = (tmp_path / f"slurm-hpcsynth-{job_id}.out").read_text()
    assert status.returncode == 0, status.stdout + status.stderr + log
    assert status.stdout.strip().splitlines()[-1] == f"{job_id} COMPLETED"
    assert "on 3 ranks" in log and "attempt 1" in log
    _assert_complete_federated_run(tmp_path / "runs" / "job.h5")


def test_hpcsynth_submit_through_submitit_prints_the_job_id_and_status_follows_it(slurm_job, tmp_path):
    job = slurm_job()
    submit = run_cli(["submit", str(job), "--nodes", "1", "--ntasks-per-node", "3", "--time", "00:10:00"],
                     cwd=tmp_path, timeout=60)
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip()
    assert job_id.isdigit()
    status = run_cli(["status", job_id, "--wait", "--timeout", "150"], cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    _assert_complete_federated_run(tmp_path / "runs" / "job.h5")
    script = (tmp_path / "runs" / "slurm" / job_id / f"{job_id}_submission.sh").read_text()
    assert "--mpi=pmi2" in script and "#SBATCH --ntasks-per-node=3" in script


def test_submit_refuses_a_job_whose_sites_differ_from_its_ranks(slurm_job, tmp_path):
    job = slurm_job()
    submit = run_cli(["submit", str(job), "--ntasks-per-node", "2", "--sbatch"], cwd=tmp_path, timeout=60)
    assert submit.returncode == 2
    assert "data defines 3 sites but the job asks for 2 ranks" in submit.stderr
    assert subprocess.run(["squeue", "-h", "-n", "hpcsynth"], capture_output=True, text=True).stdout == ""


def test_an_impossible_request_is_refused_at_submission(slurm_job, tmp_path):
    job = slurm_job()
    submit = run_cli(["submit", str(job), "--nodes", "3", "--ntasks-per-node", "1", "--sbatch"], cwd=tmp_path,
                     timeout=60)
    assert submit.returncode == 2
    assert "sbatch refused the job" in submit.stderr


def test_a_cancelled_job_leaves_no_run_file_that_looks_complete(slurm_job, tmp_path):
    from hpcsynth.slurm_glue import submit
    from hpcsynth.submit import JobSpec

    job = slurm_job({"data.n_sites": 2, "federation.rounds": 500, "federation.local_epochs": 2})
    (submitted,) = submit(JobSpec(ntasks_per_node=2, time="00:10:00"), [job], tmp_path / "runs" / "slurm")
    out = tmp_path / "runs" / "job.h5"
    wait_for(lambda: checkpoint_round(partial_path(out)) >= 1, 120, "the job's first checkpoints")
    submitted.cancel()
    # submitit asks sacct (the stand-in in slurm/bin here) and must see the cancellation
    state = wait_for(lambda: (s := submitted.get_info().get("State", "")).startswith("CANCELLED") and s, 60,
                     "submitit to see the job cancelled")
    assert state.startswith("CANCELLED")
    assert submitted.done()
    assert not out.exists()
    with h5py.File(partial_path(out), "r") as f:
        assert f.attrs["status"] == "partial"
        assert len(f["rounds"]) < 500
