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
import time
from typing import Any

import numpy as np

_OPS = ("sum", "min", "max")


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

    def split(self, color: int) -> "Communicator":
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

    def split(self, color: int) -> "Communicator":
        return self


class MPIComm(Communicator):
    """An mpi4py communicator (COMM_WORLD by default)."""

    def __init__(self, mpi_comm: Any = None) -> None:
        super().__init__()
        from mpi4py import MPI

        self._MPI = MPI
        self._comm = mpi_comm if mpi_comm is not None else MPI.COMM_WORLD
        self.rank = self._comm.Get_rank()
        self.size = self._comm.Get_size()
        self._ops = {"sum": MPI.SUM, "min": MPI.MIN, "max": MPI.MAX}

    def _allreduce(self, buffer: np.ndarray, op: str) -> None:
        self._comm.Allreduce(self._MPI.IN_PLACE, buffer, op=self._ops[op])

    def allgather(self, obj: Any) -> list:
        return self._comm.allgather(obj)

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self._comm.bcast(obj, root=root)

    def gather(self, obj: Any, root: int = 0) -> list | None:
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

    def split(self, color: int) -> "Communicator":
        return MPIComm(self._comm.Split(color, self.rank))


def launched_by_mpi() -> bool:
    """True under mpiexec/srun: the launchers set these variables; a plain `python` does not."""
    markers = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "HYDI_CONTROL_FD")
    return any(m in os.environ for m in markers)


def world() -> Communicator:
    """The communicator for this process: MPI's world when started by a launcher, else a solo one.

    A plain `hpcsynth run` never imports mpi4py, so it works on a machine without any MPI library."""
    return MPIComm() if launched_by_mpi() else SoloComm()


def local_rank() -> int:
    """This rank's index among the ranks of its node, as the launcher reports it (for GPU placement)."""
    for var in ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "PMI_LOCAL_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def local_size() -> int:
    """How many ranks share this node (to split CPU threads between them)."""
    for var in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "PMI_LOCAL_SIZE"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 1
