"""What tests that start real MPI jobs share: the repository root, the launcher, and job-file overrides."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def mpiexec_path() -> str:
    """The launcher next to this Python (the mpich wheel's) or, failing that, the one on PATH."""
    beside = Path(sys.executable).with_name("mpiexec")
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpiexec not found: install the `mpich` wheel (make test does)")
    return found


def apply_overrides(job: dict, overrides: dict | None) -> dict:
    """Set `section.key: value` (or a whole `section: value`) overrides in a job mapping; return it."""
    for key, value in (overrides or {}).items():
        section, _, leaf = key.partition(".")
        if leaf:
            job.setdefault(section, {})[leaf] = value
        else:
            job[section] = value
    return job
