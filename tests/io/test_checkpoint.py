"""Checkpoint and resume under real mpiexec: SIGKILL at random rounds, SIGTERM, and a bit-for-bit comparison
with the uninterrupted run."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpcsynth.config import ConfigError
from hpcsynth.io.checkpoint import load_checkpoint
from hpcsynth.io.runfile import partial_path
from mpi_support import REPO, mpiexec_path

JOB = {"data.n_patients": 2000, "model.hidden": [64, 64], "federation.rounds": 8, "federation.local_epochs": 4}


def start(job: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([mpiexec_path(), "-n", "3", sys.executable, "-m", "hpcsynth.cli", "run", str(job), *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def job_pids(job: Path) -> list[int]:
    """Every process of this job: the launcher, its proxy's ranks (they run in sessions of their own)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(job).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def checkpoint_round(partial: Path) -> int:
    try:
        with h5py.File(partial, "r") as f:
            return int(f["checkpoint"].attrs["round"])
    except (OSError, KeyError):
        return -1


def wait_for_round(process: subprocess.Popen, partial: Path, target: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while checkpoint_round(partial) < target and process.poll() is None:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.01)


def stopped_then_resumed(write_job, tmp_path: Path, spec: dict) -> tuple[Path, Path]:
    """Run `spec` uninterrupted, and again stopped by SIGTERM after round 1 and resumed; return both run files."""
    reference_job = write_job({**spec, "output": str(tmp_path / "reference.h5")}, name="reference.yaml")
    assert start(reference_job).wait(timeout=240) == 0
    job = write_job(spec)
    process = start(job)
    wait_for_round(process, partial_path(tmp_path / "run.h5"), 1)
    for pid in job_pids(job):
        if pid != process.pid:
            os.kill(pid, signal.SIGTERM)
    assert process.wait(timeout=60) == 3
    resumed = start(job, "--resume")
    assert resumed.wait(timeout=240) == 0, resumed.stderr.read()[-3000:]
    return tmp_path / "run.h5", tmp_path / "reference.h5"


def final_state(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete"
        return f["checkpoint/params"][()], f["synthetic/pooled/age"][()], f["rounds"][()]["loss"]


@pytest.mark.mpi
@pytest.mark.slow
def test_sigkill_at_random_rounds_then_resume_equals_the_uninterrupted_run(write_job, tmp_path):
    reference_job = write_job({**JOB, "output": str(tmp_path / "reference.h5")}, name="reference.yaml")
    assert start(reference_job).wait(timeout=240) == 0
    job = write_job(JOB)
    output, partial = tmp_path / "run.h5", partial_path(tmp_path / "run.h5")
    kill_after = sorted(random.Random(7).sample(range(7), 5))
    for i, target in enumerate(kill_after):
        process = start(job, *(["--resume"] if i else []))
        wait_for_round(process, partial, target)
        for pid in job_pids(job):
            os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert not output.exists()
        with h5py.File(partial, "r") as f:  # the partial file always opens and is marked partial
            assert f.attrs["status"] == "partial" and f["checkpoint"].attrs["round"] >= target
    finished = start(job, "--resume")
    assert finished.wait(timeout=240) == 0, finished.stderr.read()
    for got, want in zip(final_state(output), final_state(tmp_path / "reference.h5")):
        np.testing.assert_array_equal(got, want)
    assert not partial.exists()


@pytest.mark.mpi
@pytest.mark.slow
def test_sigterm_checkpoints_exits_3_and_resume_finishes(write_job, tmp_path):
    job = write_job(JOB)
    partial = partial_path(tmp_path / "run.h5")
    process = start(job)
    wait_for_round(process, partial, 1)
    for pid in job_pids(job):
        if pid != process.pid:
            os.kill(pid, signal.SIGTERM)
    assert process.wait(timeout=60) == 3
    stopped_after = checkpoint_round(partial)
    assert "stopped by SIGTERM after round" in process.stderr.read()
    assert 1 <= stopped_after < 7
    resumed = start(job, "--resume")
    assert resumed.wait(timeout=240) == 0
    with h5py.File(tmp_path / "run.h5") as f:
        assert f["rounds"][()]["round"].tolist() == list(range(8))


@pytest.mark.mpi
@pytest.mark.slow
def test_a_private_run_resumes_its_noise_stream_and_budget_exactly(write_job, tmp_path):
    private = {"data.n_patients": 900, "federation.rounds": 4, "federation.local_epochs": 1,
               "privacy": {"epsilon": 8.0, "delta": 1e-5, "max_grad_norm": 1.0}}
    run, reference = stopped_then_resumed(write_job, tmp_path, private)
    with h5py.File(run) as got, h5py.File(reference) as want:
        np.testing.assert_array_equal(got["checkpoint/params"][()], want["checkpoint/params"][()])
        np.testing.assert_array_equal(got["rounds"][()]["epsilon"], want["rounds"][()]["epsilon"])


def test_a_checkpoint_of_another_job_is_refused(tmp_path):
    partial = tmp_path / "run.partial.h5"
    with h5py.File(partial, "w") as f:
        f.create_dataset("config", data="seed: 1\n")
    with pytest.raises(ConfigError, match="written by a different job file"):
        load_checkpoint(partial, "seed: 2\n", rank=0)
    assert load_checkpoint(tmp_path / "none.partial.h5", "seed: 2\n", rank=0) is None


@pytest.mark.mpi
@pytest.mark.slow
def test_fedopt_resumes_with_its_server_moments(write_job, tmp_path):
    spec = {**JOB, "federation.rounds": 5, "federation.strategy": "fedopt", "federation.server_lr": 0.05}
    run, reference = stopped_then_resumed(write_job, tmp_path, spec)
    for got, want in zip(final_state(run), final_state(reference)):
        np.testing.assert_array_equal(got, want)


def test_a_rank_of_a_site_of_several_ranks_resumes_its_sites_row_and_its_own_state(tmp_path):
    """One parameter row per site (its ranks hold the same parameters), one local state per rank."""
    partial = tmp_path / "run.partial.h5"
    with h5py.File(partial, "w") as f:
        f.create_dataset("config", data="seed: 1\n")
        f.create_dataset("rounds", data=np.zeros(0, dtype=[("round", "i8")]))
        ckpt = f.create_group("checkpoint")
        ckpt.attrs["round"] = 2
        ckpt.create_dataset("params", data=np.array([[0.0, 0.0], [1.0, 1.0]], np.float32))
        for rank in range(4):
            ckpt.create_dataset(f"site_{rank}", data=np.frombuffer(bytes([rank]), np.uint8))
    got = load_checkpoint(partial, "seed: 1\n", rank=3, site=1)
    assert got.round == 2 and got.params.tolist() == [1.0, 1.0] and got.local_state == bytes([3])
