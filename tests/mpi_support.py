"""What tests that start real MPI jobs share: the repository root and the launcher to use."""
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
