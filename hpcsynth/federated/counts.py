"""Training for count-based generators (the Bayesian network): one exchange of counts instead of rounds.

Summing every site's counts with Allreduce gives exactly the counts of the pooled rows, so a strategy only
chooses the communicator its counts are summed over (`Strategy.fit_counts`). The run file gets one row in
/rounds (round 0, steps 0) whose loss is the mean negative log-likelihood of the sites' discretised training
rows, and one checkpoint: the fitted counts.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hpcsynth.comm import Communicator
from hpcsynth.federated.records import RoundRecord


def fit_counts(model: Any, data: np.ndarray, comm: Communicator, counted_over: Communicator,
               on_round: Callable[[RoundRecord], None] | None = None) -> list[RoundRecord]:
    """Fit `model` from this rank's encoded rows with counts summed over `counted_over` (collective on `comm`,
    the world, which only averages the reported losses)."""
    bytes_before, t0 = counted_over.bytes_reduced, time.perf_counter()
    loss = model.fit_counts(data, counted_over)
    wall = time.perf_counter() - t0
    sent = counted_over.bytes_reduced - bytes_before if counted_over.size > 1 else 0  # a lone rank sends none
    reports = comm.allgather((loss, int(data.shape[0])))
    mean_loss = sum(site_loss * n for site_loss, n in reports) / sum(n for _, n in reports)
    # counting and reducing interleave inside fit_counts, so compute and communication are not split
    record = RoundRecord(0, mean_loss, wall, float("nan"), float("nan"), sent, 0)
    if on_round is not None:
        on_round(record)
    return [record]
