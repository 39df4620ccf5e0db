"""Training for count-based generators (the Bayesian network): one exchange of counts instead of rounds.

A family that learns from counts (`model.fit_counts(data, comm)`) needs no optimiser steps and no parameter
averaging: summing every site's counts with Allreduce gives exactly the counts of the pooled rows. So the
strategy only decides whether counts are shared: `centralized` and `fedavg` sum them over all sites (both
therefore equal pooled training, bit for bit), `isolated` keeps them on the site. `federation.rounds` and
`local_epochs` do not apply; the run file gets one row in /rounds (round 0, steps 0) whose loss is the mean
negative log-likelihood of the sites' discretised training rows, and one checkpoint: the fitted counts.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.federated.loop import RoundRecord
from hpcsynth.federated.strategies import Strategy


def fit_counts(model, data: np.ndarray, strategy: Strategy, comm: Communicator,
               on_round: Callable[[RoundRecord], None] | None = None) -> list[RoundRecord]:
    """Fit `model` from this site's encoded rows and the strategy's choice of sharing (collective)."""
    site_comm = comm if strategy.shares_model else SoloComm()
    bytes_before, t0 = site_comm.bytes_reduced, time.perf_counter()
    loss = model.fit_counts(data, site_comm)
    wall = time.perf_counter() - t0
    sent = site_comm.bytes_reduced - bytes_before if strategy.shares_model else 0
    reports = comm.allgather((loss, int(data.shape[0])))
    mean_loss = sum(l * n for l, n in reports) / sum(n for _, n in reports)
    # counting and reducing interleave inside fit_counts, so compute and communication are not split
    record = RoundRecord(0, mean_loss, wall, float("nan"), float("nan"), sent, 0)
    if on_round is not None:
        on_round(record)
    return [record]
