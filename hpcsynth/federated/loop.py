"""The round loop: local work, then the strategy combines. It names no strategy and no model family.

Each round a site runs `local_epochs` worth of optimiser steps on its own rows (the strategy may reduce the
gradients after every step), then the strategy aggregates the parameter buffer: once, or after each of the
near-equal stretches of steps it asks for (`exchanges_per_round`). Per round the loop records the
mean loss over sites, the wall time split into compute and communication, the bytes reduced and the largest
peak memory of any rank (gathered with the round's reports); the caller's `on_round` writes them with a
checkpoint.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import torch

from hpcsynth.comm import Communicator
from hpcsynth.federated.preemption import Interrupted, StopRequest
from hpcsynth.federated.records import RoundRecord, peak_rss_mb
from hpcsynth.federated.strategy import Strategy
from hpcsynth.models import Generator


def _budget_exhausted(model: Generator, steps: int, comm: Communicator) -> bool:
    """Whether any site's next round would spend more than its privacy budget (collective when private)."""
    if model.privacy_ is None:
        return False
    accountant = model.privacy_.accountant
    return any(comm.allgather(accountant.epsilon_after(steps) > accountant.budget * (1 + 1e-6)))


def _stretches(steps: int, exchanges: int) -> list[int]:
    """`steps` split into `exchanges` near-equal runs (no empty run), the longer ones first."""
    runs = max(1, min(exchanges, steps))
    return [steps // runs + (i < steps % runs) for i in range(runs)]


def train_rounds(model: Generator, data: torch.Tensor, strategy: Strategy, comm: Communicator, rounds: int,
                 local_epochs: int, batch_size: int, start_round: int = 0,
                 on_round: Callable[[RoundRecord], None] | None = None,
                 stop: StopRequest | None = None) -> list[RoundRecord]:
    """Run rounds `start_round`..`rounds - 1`; return their records (identical on every rank).

    When `stop` is raised on any rank, every rank finishes the round, `on_round` checkpoints it, and
    `Interrupted` is raised everywhere."""
    n_rows = int(data.shape[0])
    strategy.setup(n_rows, batch_size, comm)
    steps = strategy.steps_per_round(local_epochs)
    stretches = _stretches(steps, strategy.exchanges_per_round(local_epochs))
    comm_seconds = 0.0

    def reduce_gradients(grad: torch.Tensor, rows: int) -> None:
        nonlocal comm_seconds
        t = time.perf_counter()
        strategy.on_gradients(grad, rows, comm)
        comm_seconds += time.perf_counter() - t

    records = []
    for r in range(start_round, rounds):
        if _budget_exhausted(model, steps, comm):
            break
        comm_seconds, bytes_before, compiled_before, t0 = 0.0, comm.bytes_reduced, model.compile_s_, time.perf_counter()
        strategy.begin_round(model.shared_parameters(), model.trainable_mask())
        loss = 0.0
        for stretch in stretches:
            loss += model.local_update(data, stretch, strategy.batch_rows, grad_hook=reduce_gradients) * stretch
            t1 = time.perf_counter()
            comm.barrier()
            strategy.aggregate(model.shared_parameters(), comm)
            comm_seconds += time.perf_counter() - t1
        loss /= steps
        wall = time.perf_counter() - t0
        spent = model.privacy_.accountant.epsilon() if model.privacy_ is not None else 0.0
        compiled = model.compile_s_ - compiled_before
        reports = comm.allgather((loss, n_rows, stop.signal_name if stop else None, spent, peak_rss_mb(), compiled))
        mean_loss = sum(site_loss * n for site_loss, n, *_ in reports) / sum(n for _, n, *_ in reports)
        record = RoundRecord(r, mean_loss, wall, wall - comm_seconds, comm_seconds,
                             comm.bytes_reduced - bytes_before, steps, max(report[3] for report in reports),
                             max_rss_mb=max(report[4] for report in reports),
                             compile_s=max(report[5] for report in reports))
        records.append(record)
        if on_round is not None:
            on_round(record)
        signals = [name for _, _, name, *_ in reports if name]
        if signals:
            raise Interrupted(r, signals[0])
    return records
