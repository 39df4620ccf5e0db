"""Shared fixtures: real `mpiexec` runs, small job files, the built-in cohort."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from mpi_support import REPO, apply_overrides, mpiexec_path

os.environ.setdefault("MKL_DYNAMIC", "FALSE")  # as the command sets it: seeded in-process fits repeat exactly


@pytest.fixture
def mpirun():
    """Run a command under `mpiexec -n N` with a hard timeout; return the completed process."""

    def run(n: int, args: list[str], timeout: float = 240, cwd: Path | None = None, env: dict | None = None):
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        return subprocess.run([mpiexec_path(), "-n", str(n), *args], capture_output=True, text=True,
                              timeout=timeout, cwd=cwd or REPO, env=full_env)

    return run


@pytest.fixture
def write_job(tmp_path):
    """Write a small job file (the demo's shape, tiny sizes) with overrides; return its path."""

    def write(overrides: dict | None = None, name: str = "job.yaml") -> Path:
        job = {
            "seed": 0,
            "data": {"builtin": "mds", "n_patients": 600, "holdout": 0.2},
            "model": {"name": "tvae", "batch_size": 100, "hidden": [32, 32], "latent_dim": 8},
            "federation": {"strategy": "fedavg", "rounds": 2, "local_epochs": 1},
            "output": str(tmp_path / "run.h5"),
            "progress": False,
        }
        apply_overrides(job, overrides)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(job))
        return path

    return write
