"""Strategies: how the sites' work is combined. Each is one small class with one job (as Flower's `Strategy`);
the round loop that calls them knows none by name.

A strategy sees the model only through two flat buffers (parameters and gradients) and the communicator:
    setup(n_rows, batch_size, comm)  once, before training: the weights (a site's share of the rows)
    batch_rows                       how many rows this site puts in each step's batch
    steps_per_round(local_epochs)    how many optimiser steps a round has on this site
    on_gradients(grad, rows, comm)   after every backward pass, before the optimiser step
    aggregate(params, comm)          at the end of every round

centralized  the pooled upper bound. In one process it trains on the pooled rows. Across ranks it is
             synchronous data-parallel SGD: every step each site draws a share of one global batch proportional
             to its size, and the gradients are averaged with one Allreduce weighted by those shares, which is
             the gradient of the pooled batch, without a row leaving its site.
isolated     the lower bound: every site trains alone and nothing is exchanged.
fedavg       McMahan et al. (AISTATS 2017): local epochs, then one Allreduce of the parameter buffer per round,
             weighted by site size: theta = sum_k (n_k / N) theta_k.
"""
from __future__ import annotations

import numpy as np
import torch

from hpcsynth.federated.comm import Communicator


def _reduce_tensor(tensor: torch.Tensor, comm: Communicator) -> None:
    """Sum a flat tensor across ranks in place; CPU tensors are reduced without a copy."""
    if tensor.device.type == "cpu":
        comm.Allreduce(tensor.numpy(), "sum")
        return
    host = tensor.detach().cpu().numpy()
    comm.Allreduce(host, "sum")
    tensor.copy_(torch.from_numpy(host))


class Strategy:
    """Does nothing: the base of every strategy, and by itself what `isolated` is."""

    name = "strategy"
    shares_model = False

    def setup(self, n_rows: int, batch_size: int, comm: Communicator) -> None:
        self.n_rows = n_rows
        self.batch_size = batch_size
        self.total_rows = n_rows

    @property
    def batch_rows(self) -> int:
        return min(self.batch_size, self.n_rows)

    def steps_per_round(self, local_epochs: int) -> int:
        return local_epochs * max(1, -(-self.n_rows // self.batch_rows))

    def on_gradients(self, grad: torch.Tensor, rows: int, comm: Communicator) -> None:
        return None

    def aggregate(self, params: torch.Tensor, comm: Communicator) -> None:
        return None


class Isolated(Strategy):
    name = "isolated"


class FedAvg(Strategy):
    """Size-weighted parameter averaging, one Allreduce of one buffer per round."""

    name = "fedavg"
    shares_model = True

    def setup(self, n_rows: int, batch_size: int, comm: Communicator) -> None:
        super().setup(n_rows, batch_size, comm)
        self.total_rows = int(comm.Allreduce(np.array([float(n_rows)]), "sum")[0])

    def aggregate(self, params: torch.Tensor, comm: Communicator) -> None:
        with torch.no_grad():
            params.mul_(self.n_rows / self.total_rows)
            _reduce_tensor(params, comm)


class Centralized(Strategy):
    """Pooled training: one process with all rows, or data-parallel SGD across ranks (see the module doc)."""

    name = "centralized"
    shares_model = True

    def setup(self, n_rows: int, batch_size: int, comm: Communicator) -> None:
        super().setup(n_rows, batch_size, comm)
        self.comm_size = comm.size
        self.total_rows = int(comm.Allreduce(np.array([float(n_rows)]), "sum")[0])
        self.global_batch = int(comm.Allreduce(np.array([float(self.batch_rows)]), "sum")[0])

    @property
    def batch_rows(self) -> int:
        """This site's share of each global batch, in proportion to its rows (at least one row)."""
        total = self.total_rows
        share = round(min(self.batch_size, total) * self.n_rows / total)
        return int(min(max(share, 1), self.n_rows))

    def steps_per_round(self, local_epochs: int) -> int:
        """The same on every site: one pass over the pooled rows per local epoch."""
        return local_epochs * max(1, -(-self.total_rows // min(self.batch_size, self.total_rows)))

    def on_gradients(self, grad: torch.Tensor, rows: int, comm: Communicator) -> None:
        if self.comm_size == 1:
            return
        with torch.no_grad():
            grad.mul_(rows / self.global_batch)
            _reduce_tensor(grad, comm)


STRATEGIES = {cls.name: cls for cls in (Centralized, Isolated, FedAvg)}


def make_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise ValueError(f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})") from None
