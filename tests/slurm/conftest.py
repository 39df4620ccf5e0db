"""The real local SLURM cluster the tests in this folder run against.

`slurm/local-cluster.sh start` runs once per session (installing SLURM and munge with apt-get if needed) and,
if this session started it, `stop` runs at the end. It needs root on Debian: there the tests must run, so a
cluster that does not start fails them with its own message; on any other machine they are skipped with the
reason. The session puts `slurm/bin` (a stand-in `sacct` answering from `scontrol`, since the local cluster
has no accounting database) and this Python's bin folder (`hpcsynth`, `mpiexec`) first on PATH, so jobs
submitted from here inherit them, as they would from a user's shell with the environment active.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mpi_support import apply_overrides

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "slurm" / "local-cluster.sh"


def _why_not() -> str | None:
    """Why this machine cannot host the local cluster, or None when it can (root on Debian)."""
    if os.name != "posix" or os.geteuid() != 0:
        return "the local SLURM cluster needs root (it installs packages and starts munge/slurmctld/slurmd)"
    if not Path("/etc/debian_version").exists():
        return "the local SLURM cluster is set up with Debian's packages (apt-get); this is not Debian"
    return None


def _ours_running() -> bool:
    status = subprocess.run([str(SCRIPT), "status"], capture_output=True, text=True)
    return "slurmctld: running" in status.stdout


@pytest.fixture(scope="session")
def slurm_cluster():
    """Start the cluster (or use the one this script already started); yield the environment for jobs."""
    reason = _why_not()
    if reason is not None:
        pytest.skip(reason)
    was_running = _ours_running()
    try:
        started = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail("slurm/local-cluster.sh start took more than 15 minutes (apt-get install?)")
    if started.returncode != 0:
        pytest.fail(f"the local SLURM cluster did not start on this root Debian machine, where it must:\n"
                    f"{started.stdout}{started.stderr}")
    path = os.pathsep.join([str(REPO / "slurm" / "bin"), str(Path(sys.executable).parent), os.environ["PATH"]])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", path)
        mp.setenv("PYTHONUNBUFFERED", "1")
        yield dict(os.environ)
    if not was_running:
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, text=True, timeout=60)


@pytest.fixture
def slurm_job(tmp_path, slurm_cluster):
    """Write a tiny 3-site MDS job file in tmp_path (overrides as `section.key: value`); return its path."""

    def write(overrides: dict | None = None, name: str = "job.yaml") -> Path:
        job = {"seed": 0,
               "data": {"builtin": "mds", "n_patients": 300, "n_sites": 3},
               "model": {"name": "tvae", "batch_size": 100, "hidden": [16, 16], "latent_dim": 4},
               "federation": {"strategy": "fedavg", "rounds": 2, "local_epochs": 1},
               "output": str(tmp_path / "runs" / (Path(name).stem + ".h5")),
               "progress": False}
        apply_overrides(job, overrides)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(job))
        return path

    return write
