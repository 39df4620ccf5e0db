"""Under mpiexec -n 4: the shared-memory weighted sum equals weighting plus an Allreduce, on one node and on two
emulated nodes of two ranks (the cross-node path), for float32 and float64, sizes that do not split evenly and
repeated calls; every rank ends bit-identical; prints SAME."""
import numpy as np
from mpi4py import MPI

from hpcsynth.comm import Communicator, MPIComm


def check(comm: MPIComm, label: str) -> None:
    world = MPI.COMM_WORLD
    for dtype, n in ((np.float32, 1001), (np.float64, 7), (np.float32, 1 << 18), (np.float32, 1001)):
        rng = np.random.default_rng(world.rank * 100 + n)
        values = rng.normal(size=n).astype(dtype)
        weight = (world.rank + 1) / 10.0
        got = values.copy()
        before = comm.bytes_reduced
        assert comm.weighted_sum(got, weight) is got
        assert comm.bytes_reduced - before == got.nbytes, label
        want = Communicator.weighted_sum(comm, values.copy(), weight)  # the plain pass and Allreduce
        rtol = 1e-6 if dtype == np.float32 else 1e-14
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, err_msg=f"{label} {dtype.__name__} {n}")
        everyone = world.allgather(got.tobytes())
        assert all(b == everyone[0] for b in everyone), f"{label}: ranks differ"


def main() -> None:
    world = MPI.COMM_WORLD
    check(MPIComm(), "one node")
    check(MPIComm(world, node_comm=world.Split(world.rank // 2, key=world.rank)), "two nodes")
    if world.rank == 0:
        print("SAME", flush=True)


if __name__ == "__main__":
    main()
