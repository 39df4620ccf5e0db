"""Several sites per rank: the nested communicator gives what one rank per site gives, in one process, under
mpiexec, and for a whole training job; a site that fails stops every rank."""
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpcsynth.comm import SoloComm
from hpcsynth.virtual_sites import host_sites

PROGRAM = Path(__file__).with_name("programs") / "virtual_sites.py"


def test_four_sites_in_one_process_reduce_gather_and_broadcast_like_four_ranks():
    def site(comm):
        summed = comm.Allreduce(np.array([comm.rank, 1.0]), "sum")
        return comm.rank, comm.size, summed.tolist(), comm.allgather(comm.rank), comm.bcast(comm.rank, root=2), \
            comm.gather(comm.rank, root=1)

    results = host_sites(4, SoloComm(), site)
    assert [r[:2] for r in results] == [(k, 4) for k in range(4)]
    assert all(r[2] == [6.0, 4.0] and r[3] == [0, 1, 2, 3] and r[4] == 2 for r in results)
    assert [r[5] for r in results] == [None, [0, 1, 2, 3], None, None]


@pytest.mark.mpi
@pytest.mark.parametrize("hosted", [1, 3])
def test_virtual_sites_on_two_ranks_see_the_collectives_of_one_rank_per_site(mpirun, hosted):
    result = mpirun(2, [sys.executable, str(PROGRAM), str(hosted)], timeout=60)
    assert result.returncode == 0 and "SAME" in result.stdout, result.stdout + result.stderr


@pytest.mark.mpi
def test_a_failing_virtual_site_stops_every_rank_with_its_message(mpirun):
    result = mpirun(2, [sys.executable, str(PROGRAM), "2", "fail"], timeout=60)
    assert result.returncode != 0
    assert "site failed on purpose" in result.stderr and "SAME" not in result.stdout


def _trained(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path) as f:
        return f["checkpoint/params"][()], np.asarray(f["rounds"]["loss"])


@pytest.mark.mpi
@pytest.mark.slow
def test_four_sites_on_two_ranks_train_as_four_sites_on_four_ranks(mpirun, write_job, tmp_path):
    """The strategies see the same sums: the averaged parameters and the losses agree to float32 rounding (the
    sums are added in another order), and the releases score the same."""
    runs = {}
    for ranks, hosted in ((4, 1), (2, 2)):
        job = write_job({"federation.strategy": ["fedavg", "isolated"], "federation.rounds": 3,
                         "federation.sites_per_rank": hosted, "output": str(tmp_path / f"r{ranks}.h5")},
                        name=f"r{ranks}.yaml")
        result = mpirun(ranks, [sys.executable, "-m", "hpcsynth.cli", "run", str(job)], timeout=300)
        assert result.returncode == 0, result.stderr
        runs[ranks] = result.stdout
        for strategy in ("fedavg", "isolated"):
            params, losses = _trained(tmp_path / f"r{ranks}-{strategy}.h5")
            runs[(ranks, strategy)] = params, losses
    for strategy in ("fedavg", "isolated"):
        (p4, l4), (p2, l2) = runs[(4, strategy)], runs[(2, strategy)]
        assert p4.shape == p2.shape and len(l4) == 3
        np.testing.assert_allclose(p2, p4, rtol=0, atol=1e-6)
        np.testing.assert_allclose(l2, l4, rtol=1e-7)
    assert _scores(runs[4]) == _scores(runs[2]) and len(_scores(runs[4])) == 3  # "mean of 4" sites included


def _scores(printed: str) -> list[list[str]]:
    """The rows of the printed comparison without their wall time (the last column)."""
    rows = [line.split() for line in printed.splitlines() if line.strip().startswith(("fedavg", "isolated"))]
    return [row[:-1] for row in rows]
