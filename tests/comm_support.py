"""Sites as threads of one process, for collective fits that need no MPI: `ThreadSumComm`, `fit_on_sites`."""
from __future__ import annotations

import threading

import numpy as np

from hpcsynth.comm import Communicator


class ThreadSumComm(Communicator):
    """`size` sites as threads of one process: every Allreduce combines all sites' buffers (a real collective
    in miniature, so each site runs its own fit against the others)."""

    def __init__(self, rank: int, shared: dict) -> None:
        super().__init__()
        self.rank, self.size, self.shared = rank, shared["size"], shared

    def _allreduce(self, buffer: np.ndarray, op: str) -> None:
        slots, barrier = self.shared["slots"], self.shared["barrier"]
        slots[self.rank] = buffer.copy()
        barrier.wait()
        combined = {"sum": np.sum, "min": np.min, "max": np.max}[op](np.stack(slots), axis=0)
        barrier.wait()
        buffer[...] = combined


def fit_on_sites(models: list, parts: list[np.ndarray]) -> list:
    """`models[k].fit(parts[k], comm)` for every site k at once, each on its own thread; returns `models`."""
    shared = {"size": len(parts), "slots": [None] * len(parts), "barrier": threading.Barrier(len(parts))}
    threads = [threading.Thread(target=m.fit, args=(x, ThreadSumComm(k, shared))) for k, (m, x) in
               enumerate(zip(models, parts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return models
