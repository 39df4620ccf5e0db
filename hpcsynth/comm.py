"""The communicator: the only door through which anything leaves a site.

Two implementations share one small interface. `MPIComm` wraps an mpi4py communicator and follows mpi4py's own
idiom: buffer-based uppercase calls (`Allreduce`) on numpy arrays for anything large, pickle-based lowercase
calls (`allgather`, `bcast`) only for small control messages. `SoloComm` is the same interface for one process
without MPI, so a generator can be fitted from a DataFrame in a notebook without `mpiexec` or even mpi4py.

Keeping every exchange behind these few methods is what lets a test wrap the communicator, record each payload
and prove that no rank ever sends its rows.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

_OPS = ("sum", "min", "max")
ABANDON_AFTER_S = 2.0  # how long the other sites of a process get to stop after one failed


class Communicator:
    """The exchanges a site may make. Subclasses implement the five primitives; `bytes_reduced` counts the
    payload of every buffer reduction, so the run file can report communication volume per round."""

    rank: int = 0
    size: int = 1

    def __init__(self) -> None:
        self.bytes_reduced = 0

    def Allreduce(self, buffer: np.ndarray, op: str = "sum") -> np.ndarray:
        """Reduce `buffer` in place across ranks (sum, min or max) and return it."""
        if op not in _OPS:
            raise ValueError(f"unknown reduction {op!r}; expected one of {_OPS}")
        if not (isinstance(buffer, np.ndarray) and buffer.flags.c_contiguous):
            raise TypeError("Allreduce needs a C-contiguous numpy array")
        self.bytes_reduced += buffer.nbytes
        self._allreduce(buffer, op)
        return buffer

    def _allreduce(self, buffer: np.ndarray, op: str) -> None:
        raise NotImplementedError

    def weighted_sum(self, buffer: np.ndarray, weight: float) -> np.ndarray:
        """`buffer` <- the sum over ranks of `weight` * `buffer`, in place (each rank its own weight); returned.
        The aggregation of every averaging strategy. Here the weighting is its own pass before an Allreduce;
        `MPIComm` fuses it into a node-local shared-memory reduction."""
        np.multiply(buffer, weight, out=buffer)
        return self.Allreduce(buffer, "sum")

    def allgather(self, obj: Any) -> list:
        """Every rank's small object, in rank order (control messages only)."""
        raise NotImplementedError

    def bcast(self, obj: Any, root: int = 0) -> Any:
        """Rank `root`'s small object, on every rank."""
        raise NotImplementedError

    def gather(self, obj: Any, root: int = 0) -> list | None:
        """Every rank's object on `root` (None elsewhere); used for synthetic rows and scores, never real rows."""
        raise NotImplementedError

    def barrier(self) -> None:
        raise NotImplementedError

    def abort(self, code: int = 1) -> None:
        """Stop every rank now. Called after one rank failed, so the others never wait in a collective."""
        raise NotImplementedError

    def split(self, color: int) -> Communicator:
        """The ranks that pass the same `color` (collective), ordered as here: the ranks of one site."""
        raise NotImplementedError

    @property
    def is_root(self) -> bool:
        return self.rank == 0


class SoloComm(Communicator):
    """One process, one site: every collective is the identity."""

    def _allreduce(self, buffer: np.ndarray, op: str) -> None:
        return None

    def allgather(self, obj: Any) -> list:
        return [obj]

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def gather(self, obj: Any, root: int = 0) -> list | None:
        return [obj]

    def barrier(self) -> None:
        return None

    def abort(self, code: int = 1) -> None:
        sys.stderr.flush()
        os._exit(code)

    def split(self, color: int) -> Communicator:
        return self


class MPIComm(Communicator):
    """An mpi4py communicator (COMM_WORLD by default)."""

    def __init__(self, mpi_comm: Any = None, node_comm: Any = None) -> None:
        """`node_comm`: the ranks that share memory with this one (default: MPI's shared-memory split)."""
        super().__init__()
        from mpi4py import MPI

        self._MPI = MPI
        self._comm = mpi_comm if mpi_comm is not None else MPI.COMM_WORLD
        self.rank = self._comm.Get_rank()
        self.size = self._comm.Get_size()
        self._ops = {"sum": MPI.SUM, "min": MPI.MIN, "max": MPI.MAX}
        self._node_comm = node_comm
        self._shared: SharedReduction | None = None
        self._patient = oversubscribed()

    def _arrive(self) -> None:
        """On an oversubscribed node, wait for every rank with the sleeping barrier before a blocking
        collective: MPICH spins while it waits, and a rank spinning at a collective takes the core from the
        rank still computing (a collective then costs a barrier's latency more; on a node with a core per
        rank nothing changes)."""
        if self._patient:
            self.barrier()

    def _allreduce(self, buffer: np.ndarray, op: str) -> None:
        self._arrive()
        self._comm.Allreduce(self._MPI.IN_PLACE, buffer, op=self._ops[op])

    def weighted_sum(self, buffer: np.ndarray, weight: float) -> np.ndarray:
        """Through `SharedReduction` where every node holds the same number of ranks (collective), else as the
        base class does."""
        if self._shared is None:
            node = self._node_comm if self._node_comm is not None else \
                self._comm.Split_type(self._MPI.COMM_TYPE_SHARED, key=self.rank)
            self._shared = SharedReduction(self._comm, node) if len(set(self._comm.allgather(node.Get_size()))) == 1 \
                else False
        if not self._shared or not buffer.flags.c_contiguous or buffer.dtype not in (np.float32, np.float64) \
                or not self._shared.fits(buffer):
            return super().weighted_sum(buffer, weight)
        self.bytes_reduced += buffer.nbytes
        self._shared.weighted_sum(buffer, weight)
        return buffer

    def allgather(self, obj: Any) -> list:
        self._arrive()
        return self._comm.allgather(obj)

    def bcast(self, obj: Any, root: int = 0) -> Any:
        self._arrive()
        return self._comm.bcast(obj, root=root)

    def gather(self, obj: Any, root: int = 0) -> list | None:
        self._arrive()
        return self._comm.gather(obj, root=root)

    def barrier(self) -> None:
        """Wait for every rank, sleeping between polls: MPICH's blocking calls spin at 100% CPU, which on an
        oversubscribed node (3 sites on 2 cores) steals the core a slower site still needs."""
        request = self._comm.Ibarrier()
        while not request.Test():
            time.sleep(0.0005)

    def abort(self, code: int = 1) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self._comm.Abort(code)

    def split(self, color: int) -> Communicator:
        return MPIComm(self._comm.Split(color, self.rank))


class SitesInOneProcess:
    """K sites run as K threads of one process that take turns: each computes alone and hands over only at a
    collective. One process then gives the same figures as K MPI ranks (a function of each site's own rows
    gives the same value whether the site is a rank or a thread), and no two threads ever run numerical
    libraries at the same time (Numba's and OpenMP's thread pools are not re-entrant).

    Parameters
    ----------
    size : int
        The number of sites.
    turn : Lock, optional
        The lock a thread holds while it computes (a sub-group shares its parent's).
    """

    def __init__(self, size: int, turn: threading.Lock | None = None) -> None:
        self.size = size
        self.turn = turn or threading.Lock()
        self.arrived = threading.Barrier(size)
        self.slots: list[Any] = [None] * size
        self.groups: dict[tuple[int, int], SitesInOneProcess] = {}
        self.splits = [0] * size

    def run(self, work: Callable[[Communicator], Any]) -> list[Any]:
        """`work(comm)` on every site, each with its own `ThreadComm`; the results in site order. The first
        failure is raised here, after every other site has been released from its collective (a site still
        inside a collective across processes, see `hpcsynth.virtual_sites`, is left after `ABANDON_AFTER_S`
        for the caller to abort the job)."""
        results: list[Any] = [None] * self.size
        errors: list[BaseException] = []

        def site(rank: int) -> None:
            with self.turn:
                try:
                    results[rank] = work(ThreadComm(self, rank))
                except threading.BrokenBarrierError:
                    pass
                except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                    errors.append(err)
                    self.arrived.abort()

        threads = [threading.Thread(target=site, args=(k,), name=f"site-{k}", daemon=True) for k in range(self.size)]
        for t in threads:
            t.start()
        deadline = None
        for t in threads:
            while t.is_alive() and (deadline is None or time.monotonic() < deadline):
                t.join(0.05)
                if errors and deadline is None:
                    deadline = time.monotonic() + ABANDON_AFTER_S
        if errors:
            raise errors[0]
        return results

    def exchange(self, rank: int, obj: Any) -> list[Any]:
        """Every site's `obj` in site order (called with the turn held; gives it up while waiting)."""
        self.slots[rank] = obj
        self._wait()
        out = list(self.slots)
        self._wait()  # nobody writes the next exchange before every site has read this one
        return out

    def _wait(self) -> None:
        self.turn.release()
        try:
            self.arrived.wait()
        finally:
            self.turn.acquire()

    def group(self, key: tuple[int, int], size: int) -> SitesInOneProcess:
        """The sub-group `key` (split number, color), made by whichever of its sites asks first."""
        return self.groups.setdefault(key, SitesInOneProcess(size, self.turn))


class ThreadComm(Communicator):
    """One site of `SitesInOneProcess`: the communicator interface over the shared slots (reductions add the
    sites' buffers in site order)."""

    def __init__(self, sites: SitesInOneProcess, rank: int) -> None:
        super().__init__()
        self.sites, self.rank, self.size = sites, rank, sites.size

    def _allreduce(self, buffer: np.ndarray, op: str) -> None:
        parts = self.sites.exchange(self.rank, buffer.copy())
        combine = {"sum": np.add, "min": np.minimum, "max": np.maximum}[op]
        total = parts[0].copy()
        for part in parts[1:]:
            combine(total, part, out=total)
        buffer[...] = total

    def allgather(self, obj: Any) -> list:
        return self.sites.exchange(self.rank, obj)

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self.sites.exchange(self.rank, obj)[root]

    def gather(self, obj: Any, root: int = 0) -> list | None:
        everything = self.sites.exchange(self.rank, obj)
        return everything if self.rank == root else None

    def barrier(self) -> None:
        self.sites.exchange(self.rank, None)

    def abort(self, code: int = 1) -> None:
        sys.stderr.flush()
        os._exit(code)

    def split(self, color: int) -> Communicator:
        colors = self.allgather(color)
        number = self.sites.splits[self.rank] = self.sites.splits[self.rank] + 1
        members = [k for k, c in enumerate(colors) if c == color]
        group = self.sites.group((number, color), len(members))
        return ThreadComm(group, members.index(self.rank))


def launched_by_mpi() -> bool:
    """True under mpiexec/srun: the launchers set these variables; a plain `python` does not."""
    markers = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "HYDI_CONTROL_FD")
    return any(m in os.environ for m in markers)


def world() -> Communicator:
    """The communicator for this process: MPI's world when started by a launcher, else a solo one.

    A plain `hpcsynth run` never imports mpi4py, so it works on a machine without any MPI library."""
    return MPIComm() if launched_by_mpi() else SoloComm()


def env_rank() -> int:
    """The launcher's rank before MPI starts (so a bad config is reported once without initialising MPI)."""
    for var in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def local_rank() -> int:
    """This rank's index among the ranks of its node, as the launcher reports it (for GPU placement)."""
    for var in ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "PMI_LOCAL_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def oversubscribed() -> bool:
    """More ranks on this node than it has cores (e.g. 3 sites on a 2-core laptop)."""
    return local_size() > (os.cpu_count() or 1)


def local_size() -> int:
    """How many ranks share this node (to split CPU threads between them)."""
    for var in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "PMI_LOCAL_SIZE"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 1


class SharedReduction:
    """A weighted Allreduce whose weighting costs nothing: the ranks of a node reduce through shared memory.

    Each rank writes ``weight * buffer`` into its own segment of a shared window (the weighting fused with the
    copy in), sums its 1/K chunk over the K segments of its node, and, across nodes, Allreduces that chunk with
    the ranks of the same node-local rank elsewhere; then every rank copies the K reduced chunks back. That is
    about five passes over the buffer per rank, against about eight for an Allreduce through MPI's shared-memory
    cells plus one for the weighting, and the sum is taken in the same (node-local rank) order on every rank, so
    all ranks end bit-identical. Windows are kept per buffer size and dtype, and freed at exit."""

    def __init__(self, comm: Any, node: Any) -> None:
        import atexit

        self.node, self.local, self.width = node, node.Get_rank(), node.Get_size()
        self.across = comm.Split(self.local, key=comm.Get_rank()) if comm.Get_size() > self.width else None
        self.windows: dict[tuple[int, str], tuple[Any, list[np.ndarray]]] = {}
        self.fitting: dict[tuple[int, str], bool] = {}
        atexit.register(self.free)

    def fits(self, buffer: np.ndarray) -> bool:
        """Whether the node's shared memory holds a window for `buffer` with room to spare (collective on the
        node; the first rank decides, from the free space of /dev/shm, which a container may keep small)."""
        key = (buffer.size, buffer.dtype.str)
        if key not in self.fitting:
            need = buffer.nbytes * self.width
            try:
                stat = os.statvfs("/dev/shm") if self.local == 0 else None
                free = stat.f_bavail * stat.f_frsize if stat else 0
            except OSError:  # no /dev/shm to measure: MPI chooses its own backing, trust it
                free = 2 * need
            self.fitting[key] = bool(self.node.bcast(free >= 2 * need if self.local == 0 else None, root=0))
        return self.fitting[key]

    def _segments(self, n: int, dtype: np.dtype) -> list[np.ndarray]:
        """Every node-local rank's segment of the window for `n` values of `dtype` (collective on the node)."""
        key = (n, dtype.str)
        if key not in self.windows:
            from mpi4py import MPI

            win = MPI.Win.Allocate_shared(n * dtype.itemsize, dtype.itemsize, comm=self.node)
            win.Lock_all()
            segments = [np.frombuffer(win.Shared_query(k)[0], dtype=dtype, count=n) for k in range(self.width)]
            self.windows[key] = (win, segments)
        return self.windows[key][1]

    def _sync(self) -> None:
        """Every rank's writes to the window visible to every other rank of the node."""
        win = next(iter(self.windows.values()))[0]
        win.Sync()
        self.node.Barrier()
        win.Sync()

    def weighted_sum(self, buffer: np.ndarray, weight: float) -> None:
        segments = self._segments(buffer.size, buffer.dtype)
        bounds = np.linspace(0, buffer.size, self.width + 1).astype(np.int64)
        np.multiply(buffer, weight, out=segments[self.local])
        self._sync()
        mine = segments[self.local][bounds[self.local]:bounds[self.local + 1]]
        for k in range(self.width):
            if k != self.local:
                np.add(mine, segments[k][bounds[self.local]:bounds[self.local + 1]], out=mine)
        if self.across is not None:
            from mpi4py import MPI

            self.across.Allreduce(MPI.IN_PLACE, mine, op=MPI.SUM)
        self._sync()
        for k in range(self.width):
            buffer[bounds[k]:bounds[k + 1]] = segments[k][bounds[k]:bounds[k + 1]]
        self._sync()  # nobody overwrites a segment another rank is still copying from

    def free(self) -> None:
        for win, _ in self.windows.values():
            win.Unlock_all()
            win.Free()
        self.windows.clear()
