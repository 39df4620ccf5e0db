"""Aggregation cost: hpcsynth's FedAvg aggregation against a bare MPI Allreduce of the same bytes, same run.

Under `mpiexec -n 4` every rank averages a float32 model of 1M and of 16M parameters with the real
`FedAvg.aggregate` (and with secure aggregation), against `MPI.COMM_WORLD.Allreduce` of the same buffer; how the
timings are taken is in benchmarks/README.md. The last line is the ratio of FedAvg's time to the bare Allreduce's
(the larger of the two sizes' ratios; target: at most 1.1), with secure aggregation's ratio beside it.

    mpiexec -n 4 python benchmarks/aggregation.py [--repeats 15]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch
from mpi4py import MPI

from hpcsynth.comm import MPIComm, local_size
from hpcsynth.federated.registry import make_strategy

SIZES = (1 << 20, 1 << 24)


def timed(fn: Callable[[], object], world: MPI.Comm) -> float:
    """Seconds from a common start (a barrier) until the slowest rank has finished `fn`."""
    world.Barrier()
    t = time.perf_counter()
    fn()
    return world.allreduce(time.perf_counter() - t, op=MPI.MAX)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    world = MPI.COMM_WORLD
    comm = MPIComm(world)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(local_size(), 1)))  # as `hpcsynth run` does
    n_rows = 1000 * (comm.rank + 1)  # unequal sites, so the weights are not all equal
    plain, secure = make_strategy("fedavg"), make_strategy("fedavg", {"secure_aggregation": True})
    plain.setup(n_rows, 500, comm)
    secure.setup(n_rows, 500, comm)
    if comm.is_root:
        print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {platform.processor() or platform.machine()}  "
              f"{os.cpu_count()} CPUs  {comm.size} ranks  {MPI.Get_library_version().splitlines()[0]}  "
              f"torch threads {torch.get_num_threads()}  load average {os.getloadavg()[0]:.1f}")
        print(f"{'params':>10} {'method':<18} {'median ms':>10} {'GB/s':>7} {'x bare':>7}")
    ratios: dict[str, list[float]] = {"fedavg": [], "secure": []}
    for n in SIZES:
        rng = np.random.default_rng(comm.rank)
        bare = rng.standard_normal(n, dtype=np.float32)
        params = torch.from_numpy(rng.standard_normal(n, dtype=np.float32))
        weight = plain.n_rows / plain.total_rows
        methods = {
            "bare Allreduce": lambda: world.Allreduce(MPI.IN_PLACE, bare, op=MPI.SUM),
            "fedavg": lambda: plain.aggregate(params, comm),
            "secure": lambda: secure.aggregate(params, comm),
            "(weighting alone)": lambda: params.mul_(weight),  # the one pass fedavg adds to the Allreduce
        }
        times: dict[str, list[float]] = {name: [] for name in methods}
        for name, fn in methods.items():  # warm-up: first-touch pages, MPI's shared-memory set-up
            timed(fn, world)
        order = list(methods)
        for r in range(args.repeats):
            # rotate, so no method always follows the same one
            for name in order[r % len(order):] + order[:r % len(order)]:
                times[name].append(timed(methods[name], world))
            bare[:] = 1.0  # keep the values bounded across repeats
            params.fill_(1.0)
        median = {name: float(np.median(t)) for name, t in times.items()}
        for name in ("fedavg", "secure"):
            ratios[name].append(median[name] / median["bare Allreduce"])
        if comm.is_root:
            for name, seconds in median.items():
                print(f"{n:>10,} {name:<18} {1e3 * seconds:>10.1f} {4 * n / seconds / 1e9:>7.2f} "
                      f"{seconds / median['bare Allreduce']:>7.2f}")
    if comm.is_root:
        print(f"ratio to a bare Allreduce (FedAvg aggregate, worst of 1M and 16M parameters, {comm.size} ranks; "
              f"target <= 1.1): {max(ratios['fedavg']):.2f} (secure aggregation: {max(ratios['secure']):.2f})")


if __name__ == "__main__":
    main()
