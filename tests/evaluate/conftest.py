"""Shared fixtures: a communicator that runs K sites as K threads of one process, so federated sums are tested
cheaply."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from hpcsynth.comm import Communicator


class SplitComm(Communicator):
    """K in-process ranks meeting at a barrier for every collective (sum, min, max, gather)."""

    def __init__(self, rank: int, shared: dict) -> None:
        super().__init__()
        self.rank, self.size, self._shared = rank, shared["size"], shared

    @classmethod
    def run(cls, work: Callable[[Communicator, int], Any], size: int) -> list:
        shared = {"size": size, "barrier": threading.Barrier(size), "slots": [None] * size}
        results, errors = [None] * size, []

        def target(k: int) -> None:
            try:
                results[k] = work(cls(k, shared), k)
            except BaseException as err:  # surface a site's failure in the test
                errors.append(err)
                shared["barrier"].abort()

        threads = [threading.Thread(target=target, args=(k,)) for k in range(size)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        if errors:
            raise errors[0]
        return results

    def _exchange(self, obj: Any) -> list:
        self._shared["barrier"].wait()
        self._shared["slots"][self.rank] = obj
        self._shared["barrier"].wait()
        out = list(self._shared["slots"])
        self._shared["barrier"].wait()
        return out

    def _allreduce(self, buffer: np.ndarray, op: str) -> None:
        parts = self._exchange(buffer.copy())
        reduce = {"sum": np.sum, "min": np.min, "max": np.max}[op]
        buffer[...] = reduce(np.stack(parts), axis=0)

    def allgather(self, obj: Any) -> list:
        return self._exchange(obj)

    def gather(self, obj: Any, root: int = 0) -> list | None:
        out = self._exchange(obj)
        return out if self.rank == root else None

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self._exchange(obj)[root]

    def barrier(self) -> None:
        self._shared["barrier"].wait()

    def abort(self, code: int = 1) -> None:
        raise RuntimeError("abort")




@pytest.fixture
def sites():
    """Run `work(comm, k)` on K in-process sites; returns their results in rank order."""
    return SplitComm.run


@pytest.fixture(scope="session")
def mds():
    """A small MDS cohort split into training and held-out rows, with its scoring transform."""
    from hpcsynth.data.mds import simulate_mds
    from hpcsynth.data.transformer import TableTransformer

    frame = simulate_mds(n_patients=600, n_sites=3, seed=1).drop(columns=["patient_id"])
    site = frame.pop("site").to_numpy()
    held = np.random.default_rng(0).random(len(frame)) < 0.3
    train, holdout = frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)
    transformer = TableTransformer(["sex", "cyto_risk", "ipssr_category"], "os_months", "os_event").fit(train)
    return train, holdout, site[held], transformer


@pytest.fixture(scope="session")
def noisy_synthetic(mds):
    """A stand-in synthetic table: training rows resampled with jittered numbers (no generator needed)."""
    train, _, _, _ = mds
    rng = np.random.default_rng(5)
    frame = train.sample(len(train), replace=True, random_state=5).reset_index(drop=True)
    for column in ("age", "hb", "os_months"):
        frame[column] = np.abs(frame[column] * rng.normal(1.0, 0.1, len(frame)))
    return frame
