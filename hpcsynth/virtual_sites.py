"""More sites than ranks: S virtual sites on every rank, so that 3 ranks can simulate 96 hospitals.

The sites of one rank are threads of `SitesInOneProcess` that take turns (one computes at a time, as one core
would run them in turn); `NestedComm` numbers site s of rank r as `r * S + s` and does each collective in two
steps: among the rank's threads first, then (by the rank's first thread) across ranks. Every site therefore sees
the same communicator as with one rank per site: the same size, its own rank, and the same sums (added in
another order: equal up to floating-point rounding).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from hpcsynth.comm import Communicator, SitesInOneProcess

T = TypeVar("T")


class NestedComm(Communicator):
    """One virtual site: `local` holds the sites of this rank (threads), `outer` the ranks.

    Parameters
    ----------
    local : Communicator
        The sites hosted by this process (a `ThreadComm`), `local.size` of them on every rank.
    outer : Communicator
        The ranks of the job (MPI, or `SoloComm` for one process).
    """

    def __init__(self, local: Communicator, outer: Communicator) -> None:
        super().__init__()
        self.local, self.outer = local, outer
        self.rank = outer.rank * local.size + local.rank
        self.size = outer.size * local.size

    @property
    def _leads(self) -> bool:
        return self.local.rank == 0

    def _across_ranks(self, step: Callable[[], Any]) -> Any:
        """`step()` on this rank's first site, its result on every site of the rank."""
        return self.local.bcast(step() if self._leads else None)

    def _allreduce(self, buffer: np.ndarray, op: str) -> None:
        self.local.Allreduce(buffer, op)
        buffer[...] = self._across_ranks(lambda: self.outer.Allreduce(buffer.copy(), op))

    def allgather(self, obj: Any) -> list:
        mine = self.local.allgather(obj)
        return self._across_ranks(lambda: [x for part in self.outer.allgather(mine) for x in part])

    def bcast(self, obj: Any, root: int = 0) -> Any:
        owner, index = divmod(root, self.local.size)
        here = self.local.bcast(obj, root=index)
        return self._across_ranks(lambda: self.outer.bcast(here, root=owner))

    def gather(self, obj: Any, root: int = 0) -> list | None:
        owner, index = divmod(root, self.local.size)
        mine = self.local.allgather(obj)
        parts = self._across_ranks(lambda: self.outer.gather(mine, root=owner))
        return [x for part in parts for x in part] if self.rank == root else None

    def barrier(self) -> None:
        self.local.barrier()
        self._across_ranks(self.outer.barrier)

    def abort(self, code: int = 1) -> None:
        self.outer.abort(code)

    def split(self, color: int) -> Communicator:
        raise NotImplementedError("sub-groups of virtual sites (federation.sites_per_rank > 1 with "
                                  "federation.ranks_per_site > 1) are not supported")


def host_sites(sites_per_rank: int, outer: Communicator, work: Callable[[Communicator], T]) -> list[T]:
    """`work(comm)` for each of the `sites_per_rank` sites of this rank, in turn, each with its `NestedComm`;
    their results in site order. The first failure is raised here once every site of the rank has stopped."""
    return SitesInOneProcess(sites_per_rank).run(lambda local: work(NestedComm(local, outer)))
