"""The strategies that combine sites by reducing one flat buffer (parameters or gradients).

centralized  the pooled upper bound: synchronous data-parallel SGD; every step each site draws a share of one
             global batch proportional to its size and one size-weighted reduction of the gradients gives the
             pooled batch's gradient, without a row leaving its site (in one process: the pooled rows).
isolated     the lower bound: every site trains alone and nothing is exchanged.
fedavg       McMahan et al. (AISTATS 2017): local epochs, then theta = sum_k (n_k / N) theta_k once per round.
fedprox      Li et al. (MLSys 2020): FedAvg plus the proximal term mu/2 ||theta - theta_global||^2 locally.
fedopt       Reddi et al. (ICLR 2021), FedAdam: the round's averaged change is a pseudo-gradient for a server
             Adam step that every rank takes alike, so it costs no traffic.
fedbn        Li et al. (ICLR 2021): FedAvg of everything but the BatchNorm layers, whose weights and running
             statistics stay each site's own, so a site's feature shift is normalised locally.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from hpcsynth.comm import Communicator
from hpcsynth.federated.strategy import Strategy


class Isolated(Strategy):
    """Every site trains alone; nothing leaves it (the base's defaults)."""

    name = "isolated"
    trains = frozenset({"gradients", "counts"})


class FedAvg(Strategy):
    """Size-weighted parameter averaging, one Allreduce of one buffer per round."""

    name = "fedavg"
    trains = frozenset({"gradients", "counts"})  # counts: summed over the sites, the pooled counts exactly
    shares_model = True
    pools_prior = True
    releases_per_site = False

    def setup(self, n_rows: int, batch_size: int, comm: Communicator) -> None:
        super().setup(n_rows, batch_size, comm)
        self.total_rows = int(comm.Allreduce(np.array([float(n_rows)]), "sum")[0])

    def aggregate(self, params: torch.Tensor, comm: Communicator) -> None:
        self.reducer.weighted_sum(params, self.n_rows / self.total_rows, comm)


class FedBN(FedAvg):
    """FedAvg outside the normalisation layers: their entries (`normalisation_mask`) keep each site's values.
    Every site ends with its own model (shared weights, its own BatchNorm), so each releases its own table."""

    name = "fedbn"
    trains = frozenset({"gradients"})
    needs_normalisation = True
    shares_model = False
    pools_prior = False
    releases_per_site = True

    def attach(self, model, data: torch.Tensor, comm: Communicator) -> None:
        self.local = model.normalisation_mask()

    def aggregate(self, params: torch.Tensor, comm: Communicator) -> None:
        with torch.no_grad():
            own = params[self.local].clone()
            super().aggregate(params, comm)
            params[self.local] = own


class GlobalBatchShares(Strategy):
    """Every site's batch is its share of one global batch of `batch_size` rows, in proportion to its rows, so
    that every site takes the same number of steps per epoch: one pass over the pooled rows."""

    def setup(self, n_rows: int, batch_size: int, comm: Communicator) -> None:
        super().setup(n_rows, batch_size, comm)
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


class Centralized(GlobalBatchShares):
    """Pooled training: one process with all rows, or data-parallel SGD across ranks (see the module doc)."""

    name = "centralized"
    trains = frozenset({"gradients", "counts"})
    data_parallel = True
    shares_model = True
    pools_prior = True
    releases_per_site = False

    def setup(self, n_rows: int, batch_size: int, comm: Communicator) -> None:
        super().setup(n_rows, batch_size, comm)
        self.comm_size = comm.size

    def on_gradients(self, grad: torch.Tensor, rows: int, comm: Communicator) -> None:
        if self.comm_size == 1:
            return
        self.reducer.weighted_sum(grad, rows / self.global_batch, comm)


class FedProx(FedAvg):
    """FedAvg with the proximal term mu/2 ||theta - theta_global||^2 in every site's local objective (Li et al.,
    "Federated Optimization in Heterogeneous Networks", MLSys 2020).

    The term's gradient, mu (theta - theta_global), is added to the flat gradient after each backward pass. That
    is exactly the gradient of the penalised loss, so any optimiser (SGD, Adam with its decay) steps exactly as
    on the penalised objective, for every model family, with no change to the models. Under DP-SGD it is added
    after clipping and noise: the term does not touch the data, so it costs no privacy. mu = 0 is FedAvg.

    Parameters
    ----------
    mu : float, default 0.01
        Weight of the proximal term (`federation.mu`).
    """

    name = "fedprox"
    trains = frozenset({"gradients"})

    def __init__(self, mu: float = 0.01) -> None:
        super().__init__()
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
    no traffic of its own. The moments m and v live on every rank and are checkpointed with it.

    Parameters
    ----------
    server_lr : float, default 0.01
        The server's Adam learning rate (`federation.server_lr`).
    """

    name = "fedopt"
    trains = frozenset({"gradients"})
    betas: ClassVar[tuple[float, float]] = (0.9, 0.99)
    tau: ClassVar[float] = 1e-3

    def __init__(self, server_lr: float = 0.01) -> None:
        super().__init__()
        self.server_lr = server_lr
        self.m: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def state(self) -> dict:
        return {"m": self.m, "v": self.v}

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
