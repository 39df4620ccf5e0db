"""The communicator: what crosses ranks. The job runs under real mpiexec with a recording communicator."""
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hpcsynth.comm import SitesInOneProcess, SoloComm

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


def test_sites_in_one_process_exchange_like_ranks_and_take_turns():
    """Collectives over threads give what MPI ranks would; between collectives no two sites compute at once."""
    inside, most = [0], [0]

    def compute() -> None:
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.005)  # a thread that did not hold the turn would run here
        inside[0] -= 1

    def work(comm):
        compute()
        total = comm.Allreduce(np.array([comm.rank + 1.0, -comm.rank]), "sum")
        compute()
        smallest = comm.Allreduce(np.array([float(comm.rank)]), "min")
        group = comm.split(comm.rank % 2)
        compute()
        within = group.allgather(comm.rank)
        return total.tolist(), smallest[0], comm.allgather(comm.rank), comm.bcast(comm.rank * 10, root=2), \
            comm.gather(comm.rank), within

    results = SitesInOneProcess(3).run(work)
    assert [r[0] for r in results] == [[6.0, -3.0]] * 3 and {r[1] for r in results} == {0.0}
    assert all(r[2] == [0, 1, 2] and r[3] == 20 for r in results)
    assert results[0][4] == [0, 1, 2] and results[1][4] is None
    assert [r[5] for r in results] == [[0, 2], [1], [0, 2]]
    assert most[0] == 1


def test_a_failing_site_raises_its_error_and_releases_the_others():
    def work(comm):
        if comm.rank == 1:
            raise ValueError("site 1: bad rows")
        comm.barrier()
        return comm.rank

    with pytest.raises(ValueError, match="site 1: bad rows"):
        SitesInOneProcess(3).run(work)
