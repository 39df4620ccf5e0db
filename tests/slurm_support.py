"""What the SLURM tests share besides their fixtures: running the CLI as a user would, polling, reading a
checkpoint. A module of its own (not imported through a `tests` package, which an installed wheel may shadow)."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import h5py
import pytest

from mpi_support import REPO

__all__ = ["REPO", "checkpoint_round", "run_cli", "wait_for"]


def run_cli(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """`hpcsynth ARGS` as a user types it (the console script on PATH), in `cwd`."""
    return subprocess.run(["hpcsynth", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.2):
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def checkpoint_round(path: Path) -> int:
    """The round of the checkpoint in a partial run file, -1 while there is none (or it is being replaced)."""
    try:
        with h5py.File(path, "r") as f:
            return int(f["checkpoint"].attrs["round"])
    except (OSError, KeyError):
        return -1
