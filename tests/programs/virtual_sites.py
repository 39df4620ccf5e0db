"""Under mpiexec -n R with S virtual sites per rank (argv[1] = S): every collective of `NestedComm` gives what
R * S ranks would, checked against closed forms on every site; prints SAME from site 0. With argv[2] = "fail",
the last site raises instead of joining a reduction: every rank must stop (the job aborts, no hang)."""
import sys

import numpy as np

from hpcsynth.comm import Communicator, world
from hpcsynth.launch import collectively
from hpcsynth.virtual_sites import host_sites


def check(comm: Communicator, hosted: int) -> str:
    n = comm.size
    assert n == world().size * hosted
    values = np.arange(5, dtype=np.float64) + comm.rank
    assert comm.Allreduce(values, "sum").tolist() == [n * k + n * (n - 1) / 2 for k in range(5)]
    assert comm.Allreduce(np.array([float(comm.rank)]), "max")[0] == n - 1
    assert comm.Allreduce(np.array([float(comm.rank)]), "min")[0] == 0
    weighted = comm.weighted_sum(np.ones(3, dtype=np.float32), comm.rank + 1.0)
    assert weighted.tolist() == [n * (n + 1) / 2] * 3
    assert comm.allgather(comm.rank * 10) == [10 * k for k in range(n)]
    for root in range(n):
        assert comm.bcast(f"from {comm.rank}", root=root) == f"from {root}"
        gathered = comm.gather(comm.rank, root=root)
        assert gathered == (list(range(n)) if comm.rank == root else None)
    comm.barrier()
    if len(sys.argv) > 2 and comm.rank == n - 1:
        raise RuntimeError("site failed on purpose")
    comm.Allreduce(np.zeros(1))
    return "SAME"


def main() -> None:
    hosted = int(sys.argv[1])
    outer = world()
    results = collectively(outer, lambda: host_sites(hosted, outer, lambda comm: check(comm, hosted)))
    if outer.rank == 0:
        print(results[0], flush=True)


if __name__ == "__main__":
    main()
