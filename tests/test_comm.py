"""The communicator: what crosses ranks. The job runs under real mpiexec with a recording communicator."""
import sys
from pathlib import Path

import numpy as np
import pytest

from hpcsynth.comm import SoloComm

PROGRAM = Path(__file__).with_name("programs") / "record_payloads.py"


def test_solo_collectives_are_the_identity_and_count_bytes():
    comm = SoloComm()
    buffer = np.arange(4.0)
    assert comm.Allreduce(buffer, "max") is buffer and buffer.tolist() == [0, 1, 2, 3]
    assert comm.bytes_reduced == 32
    assert comm.allgather("x") == ["x"] and comm.gather(1) == [1] and comm.bcast(2) == 2


def test_allreduce_rejects_unknown_ops_and_non_contiguous_buffers():
    comm = SoloComm()
    with pytest.raises(ValueError, match="unknown reduction"):
        comm.Allreduce(np.zeros(2), "prod")
    with pytest.raises(TypeError, match="C-contiguous"):
        comm.Allreduce(np.zeros((4, 4))[:, 0])


@pytest.mark.mpi
@pytest.mark.slow
def test_no_rank_sends_its_rows(mpirun, write_job):
    job = write_job({"federation.strategy": ["centralized", "isolated", "fedavg"]})
    result = mpirun(3, [sys.executable, str(PROGRAM), str(job)], timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    for rank in range(3):
        assert f"rank {rank}: " in result.stdout and "rows found: 0" in result.stdout


def test_one_process_weighted_sum_is_the_weighting():
    buffer = np.array([1.0, -2.0, 4.0], dtype=np.float32)
    comm = SoloComm()
    assert comm.weighted_sum(buffer, 0.5) is buffer and buffer.tolist() == [0.5, -1.0, 2.0]
    assert comm.bytes_reduced == 12


@pytest.mark.mpi
def test_the_shared_memory_weighted_sum_equals_weighting_and_allreduce_on_one_and_two_nodes(mpirun):
    result = mpirun(4, [sys.executable, str(PROGRAM.with_name("weighted_sum.py"))], timeout=120)
    assert result.returncode == 0 and "SAME" in result.stdout, result.stderr
