"""Strategies under real mpiexec: FedAvg and data-parallel centralized equal one pooled full-batch step."""
import sys
from pathlib import Path

import pytest

PROGRAM = Path(__file__).with_name("programs") / "fedavg_step.py"


@pytest.mark.mpi
@pytest.mark.parametrize("strategy", ["fedavg", "centralized"])
def test_one_full_batch_step_per_site_equals_one_pooled_step(mpirun, strategy):
    result = mpirun(3, [sys.executable, str(PROGRAM), strategy], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "EQUAL" in result.stdout


@pytest.mark.mpi
def test_isolated_sites_do_not_equal_the_pooled_step(mpirun):
    result = mpirun(3, [sys.executable, str(PROGRAM), "isolated"], timeout=120)
    assert result.returncode != 0 and "max difference" in result.stdout + result.stderr
