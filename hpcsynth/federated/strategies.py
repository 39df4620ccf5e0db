"""Strategies: how the sites' work is combined. Each is one small class with one job (as Flower's `Strategy`);
the round loop that calls them knows none by name.

A strategy sees the model only through two flat buffers (parameters and gradients) and the communicator:
    setup(n_rows, batch_size, comm)  once, before training: the weights (a site's share of the rows)
    batch_rows                       how many rows this site puts in each step's batch
    steps_per_round(local_epochs)    how many optimiser steps a round has on this site
    begin_round(params, trainable)   at the start of every round, with the parameters the round starts from
    on_gradients(grad, rows, comm)   after every backward pass, before the optimiser step
    aggregate(params, comm)          at the end of every round

centralized  the pooled upper bound. In one process it trains on the pooled rows. Across ranks it is
             synchronous data-parallel SGD: every step each site draws a share of one global batch proportional
             to its size, and the gradients are averaged with one Allreduce weighted by those shares, which is
             the gradient of the pooled batch, without a row leaving its site.
isolated     the lower bound: every site trains alone and nothing is exchanged.
fedavg       McMahan et al. (AISTATS 2017): local epochs, then one weighted sum of the parameter buffer per
             round, theta = sum_k (n_k / N) theta_k (`Communicator.weighted_sum`: on a node, a shared-memory
             reduction with the weighting fused in; across nodes, an Allreduce of each node's share).
fedprox      Li et al. (MLSys 2020): FedAvg whose local objective adds the proximal term
             mu/2 ||theta - theta_global||^2, which keeps sites with different data near the global model.
fedopt       Reddi et al. (ICLR 2021), FedAdam: the averaged change of a round is a pseudo-gradient for a
             server-side Adam step on the global model; every rank takes the same step, so it costs no traffic.

With `secure_aggregation` every reduction (parameters, and the centralized strategy's gradients) goes through
pairwise masks (hpcsynth.federated.secure): still one Allreduce of one buffer, of uint64 fixed-point values.
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping

import numpy as np
import torch

from hpcsynth.comm import Communicator
from hpcsynth.federated.secure import PairwiseMasks


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

    def __init__(self, secure_aggregation: bool = False) -> None:
        self.secure_aggregation = secure_aggregation

    def setup(self, n_rows: int, batch_size: int, comm: Communicator) -> None:
        self.n_rows = n_rows
        self.batch_size = batch_size
        self.total_rows = n_rows
        masked = self.secure_aggregation and self.shares_model and comm.size > 1
        self.masks = PairwiseMasks.agree(comm) if masked else None

    @property
    def batch_rows(self) -> int:
        return min(self.batch_size, self.n_rows)

    def steps_per_round(self, local_epochs: int) -> int:
        return local_epochs * max(1, -(-self.n_rows // self.batch_rows))

    def begin_round(self, params: torch.Tensor, trainable: torch.Tensor | None = None) -> None:
        """Called before each round's local work; `trainable` marks the entries of `params` that gradient
        descent trains (the rest are statistics, e.g. BatchNorm's running moments), None when all are."""
        return None

    def on_gradients(self, grad: torch.Tensor, rows: int, comm: Communicator) -> None:
        return None

    def aggregate(self, params: torch.Tensor, comm: Communicator) -> None:
        return None

    def state(self) -> dict:
        """What the strategy itself must keep across a restart (checkpointed with each site's state)."""
        return {}

    def load_state(self, state: dict) -> None:
        return None

    def _weighted_sum(self, tensor: torch.Tensor, weight: float, comm: Communicator) -> None:
        """tensor <- sum over ranks of weight_k * tensor_k, in place: one Allreduce, masked when secure (where
        the weighting is folded into the fixed-point encoding, which is a pass over the buffer anyway)."""
        with torch.no_grad():
            if self.masks is not None:
                self.masks.sum(tensor, comm, weight)
                return
            if tensor.device.type == "cpu":
                comm.weighted_sum(tensor.numpy(), weight)
                return
            tensor.mul_(weight)
            _reduce_tensor(tensor, comm)


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
        self._weighted_sum(params, self.n_rows / self.total_rows, comm)


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
        self._weighted_sum(grad, rows / self.global_batch, comm)


class FedProx(FedAvg):
    """FedAvg with the proximal term mu/2 ||theta - theta_global||^2 in every site's local objective (Li et al.,
    "Federated Optimization in Heterogeneous Networks", MLSys 2020).

    The term's gradient, mu (theta - theta_global), is added to the flat gradient after each backward pass. That
    is exactly the gradient of the penalised loss, so any optimiser (SGD, Adam with its decay) steps exactly as
    on the penalised objective, for every model family, with no change to the models. Under DP-SGD it is added
    after clipping and noise: the term does not touch the data, so it costs no privacy. mu = 0 is FedAvg."""

    name = "fedprox"

    def __init__(self, mu: float = 0.01, secure_aggregation: bool = False) -> None:
        super().__init__(secure_aggregation)
        self.mu = mu

    def begin_round(self, params: torch.Tensor, trainable: torch.Tensor | None = None) -> None:
        self.params = params
        self.anchor = params.detach().clone()
        self.difference = torch.empty_like(self.anchor)

    def on_gradients(self, grad: torch.Tensor, rows: int, comm: Communicator) -> None:
        if self.mu:
            with torch.no_grad():
                torch.sub(self.params, self.anchor, out=self.difference)
                grad.add_(self.difference, alpha=self.mu)


class FedOpt(FedAvg):
    """FedAdam (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2): the size-weighted
    average change of a round, delta = sum_k (n_k / N) theta_k - theta, is a pseudo-gradient for Adam on the server:

        m <- b1 m + (1 - b1) delta,   v <- b2 v + (1 - b2) delta^2,   theta <- theta + lr m / (sqrt(v) + tau)

    with the paper's b1 = 0.9, b2 = 0.99, tau = 1e-3 and no bias correction. The average is FedAvg's one
    Allreduce; every rank then holds the same delta and takes the same step, so the server needs no rank and
    no traffic of its own. The moments m and v live on every rank and are checkpointed with it."""

    name = "fedopt"
    betas = (0.9, 0.99)
    tau = 1e-3

    def __init__(self, server_lr: float = 0.01, secure_aggregation: bool = False) -> None:
        super().__init__(secure_aggregation)
        self.server_lr = server_lr
        self.m: torch.Tensor | None = None

    def state(self) -> dict:
        return {"m": self.m, "v": getattr(self, "v", None)}

    def load_state(self, state: dict) -> None:
        self.m, self.v = state["m"], state["v"]

    def begin_round(self, params: torch.Tensor, trainable: torch.Tensor | None = None) -> None:
        self.anchor = params.detach().clone()
        self.statistics = None if trainable is None or bool(trainable.all()) else ~trainable
        if self.m is None:
            self.m, self.v = torch.zeros_like(self.anchor), torch.zeros_like(self.anchor)

    def aggregate(self, params: torch.Tensor, comm: Communicator) -> None:
        """The server step on what gradient descent trains; statistics (BatchNorm's running moments) take the
        plain average, as they are not a model that a pseudo-gradient could move."""
        super().aggregate(params, comm)
        with torch.no_grad():
            averaged = params[self.statistics] if self.statistics is not None else None
            self._server_step(params)
            if averaged is not None:
                params[self.statistics] = averaged

    def _server_step(self, params: torch.Tensor) -> None:
        b1, b2 = self.betas
        delta = params.sub_(self.anchor)  # the buffer holds delta, then the denominator, then the step
        self.m.mul_(b1).add_(delta, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(delta, delta, value=1 - b2)
        torch.sqrt(self.v, out=params).add_(self.tau)
        torch.div(self.m, params, out=params).mul_(self.server_lr).add_(self.anchor)


STRATEGIES = {cls.name: cls for cls in (Centralized, Isolated, FedAvg, FedProx, FedOpt)}


def all_strategies() -> dict[str, type[Strategy]]:
    """The classes above and those built on them in modules of their own (imported late: they import this)."""
    from hpcsynth.federated.latent_alignment import LatentAlignment
    from hpcsynth.federated.sd_sharing import SDSharing

    return {**STRATEGIES, SDSharing.name: SDSharing, LatentAlignment.name: LatentAlignment}


def make_strategy(name: str, options: Mapping[str, Any] | None = None) -> Strategy:
    """The strategy `name`, given those of `options` (the federation settings, e.g. mu, server_lr,
    secure_aggregation) that its constructor takes."""
    try:
        cls = all_strategies()[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r} (known: {', '.join(all_strategies())})") from None
    accepted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in (options or {}).items() if k in accepted})
