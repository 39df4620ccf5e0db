"""Strategies against client drift: on non-IID sites, many local steps pull each site's model towards its own
optimum, and FedAvg averages models that have drifted apart. Each strategy here corrects that differently.

scaffold  Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging for Federated Learning" (ICML 2020),
          Algorithm 1 with option II control variates and server lr 1: every local gradient is corrected by
          c - c_k (the consortium's control variate minus the site's). Parameters and control-variate changes
          are averaged in one Allreduce of one buffer, twice FedAvg's traffic.
feddyn    Acar et al., "Federated Learning Based on Dynamic Regularization" (ICLR 2021), Algorithm 1 with full
          participation: the local objective gets a linear term and a proximal term, which make the sites'
          stationary points agree with the consortium's. The server keeps h and steps past the average. Traffic
          is FedAvg's.
fedavgm   Hsu, Qi and Brown, "Measuring the Effects of Non-Identical Data Distribution for Federated Visual
          Classification" (arXiv:1909.06335, 2019): FedAvg with server momentum on the round's averaged change.
          Every rank takes the same server step, so traffic is FedAvg's.

All three average size-weighted (n_k / N), as FedAvg does. Only the entries that gradient descent trains (the
`trainable` mask of `begin_round`) are corrected or carry state. Statistics kept in the buffer, e.g. CTGAN's
BatchNorm running moments, take FedAvg's plain average.

Under DP-SGD the accountant's epsilon covers everything these strategies compute or exchange. SCAFFOLD's c_k and
c, FedDyn's grad_k and h, and the momentum come from model parameters only: the round's start x, which every site
holds, and the site's end y_k, which DP-SGD's clipped and noised steps reached. Earlier values of the same kind
enter too. None reads a row or an un-noised gradient, so each is post-processing of the mechanism that the
accountant already counts. That holds because SCAFFOLD uses option II, (x - y_k) / (K lr). Option I, a fresh
gradient of the site's loss at x, would be an unaccounted release. The corrections are added after clipping and
noise (as FedProx's term is) and are the same for every row of a batch, so they change no sensitivity.
With several ranks per site (`SiteParallel`), the ranks of a site see the site's averaged gradient and hold the
same parameters and state. Weighting each rank by its shard gives the same sums as one rank per site.
"""
from __future__ import annotations

from typing import Any

import torch

from hpcsynth.comm import Communicator
from hpcsynth.federated.strategies import FedAvg


class _Anchored(FedAvg):
    """FedAvg that remembers the round's starting point and which entries gradient descent trains."""

    trains = frozenset({"gradients"})

    def begin_round(self, params: torch.Tensor, trainable: torch.Tensor | None = None) -> None:
        self.params = params
        self.anchor = params.detach().clone()
        self.trained = None if trainable is None or bool(trainable.all()) else torch.nonzero(trainable).squeeze(1)

    def _trained(self, tensor: torch.Tensor) -> torch.Tensor:
        """The trained entries of a full-length buffer (the buffer itself when every entry is trained)."""
        return tensor if self.trained is None else tensor[self.trained]

    def _add_trained(self, tensor: torch.Tensor, values: torch.Tensor) -> None:
        """tensor[trained] += values, in place."""
        if self.trained is None:
            tensor.add_(values)
        else:
            tensor.index_add_(0, self.trained, values)

    def _set_trained(self, tensor: torch.Tensor, values: torch.Tensor) -> None:
        """tensor[trained] = values, in place."""
        if self.trained is None:
            tensor.copy_(values)
        else:
            tensor[self.trained] = values

    def _zeros(self, params: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        """A state vector over the trained entries: `state` moved to the parameters' device (a checkpoint loads
        on the CPU), or zeros at the start."""
        if state is not None:
            return state.to(device=params.device, dtype=params.dtype)
        return torch.zeros(params.numel() if self.trained is None else self.trained.numel(), dtype=params.dtype,
                           device=params.device)


class Scaffold(_Anchored):
    """SCAFFOLD with option II control variates (Karimireddy et al., ICML 2020, Algorithm 1).

    Every site k keeps its control variate c_k, and every site holds the consortium's c. Each local gradient
    becomes g + c - c_k after its backward pass. At the end of a round with K local steps from x to y_k:

        c_k+ = c_k - c + (x - y_k) / (K lr)
        x    <- sum_k (n_k / N) y_k                  (server lr 1)
        c    <- c + sum_k (n_k / N) (c_k+ - c_k)

    One Allreduce reduces the concatenation of the parameters and the control-variate changes. That buffer is the
    parameter count plus the trained-entry count, twice FedAvg's traffic when every entry is trained. The paper
    averages c uniformly over sites; here it is size-weighted like the parameters. K counts the site's actual
    optimiser steps in the round. lr is the model's own local learning rate (`lr`, bound in `attach`). Under
    plain SGD without weight decay, c_k+ is exactly the mean of the site's raw gradients over the round.
    Under Adam (the default of TVAE, VAE-BGM and TabDDPM), (x - y_k) / (K lr) uses the nominal lr, as common
    implementations do. Adam's steps are normalised, so this is the mean step direction, not a mean gradient. A
    generator without one `lr` (CTGAN: two networks with their own rates and step counts) is refused
    (`needs_lr`).

    c and c_k live on every rank and are checkpointed with it. Statistics entries carry no control variate.
    """

    name = "scaffold"
    needs_lr = True

    def __init__(self) -> None:
        super().__init__()
        self.lr: float | None = None
        self.c: torch.Tensor | None = None
        self.c_local: torch.Tensor | None = None

    def attach(self, model: Any, data: torch.Tensor, comm: Communicator) -> None:
        """Bind the model's local learning rate (the job calls this before training)."""
        if not model.one_lr:
            raise ValueError(f"federation.strategy: scaffold needs the model's one learning rate lr, which "
                             f"{type(model).__name__} does not have")
        self.lr = float(model.lr)

    def state(self) -> dict:
        return {"c": self.c, "c_local": self.c_local}

    def load_state(self, state: dict) -> None:
        self.c, self.c_local = state["c"], state["c_local"]

    def begin_round(self, params: torch.Tensor, trainable: torch.Tensor | None = None) -> None:
        super().begin_round(params, trainable)
        self.c, self.c_local = self._zeros(params, self.c), self._zeros(params, self.c_local)
        self.correction = self.c - self.c_local  # the same for every step of the round
        self.steps = 0

    def on_gradients(self, grad: torch.Tensor, rows: int, comm: Communicator) -> None:
        self.steps += 1
        with torch.no_grad():
            self._add_trained(grad, self.correction)

    def aggregate(self, params: torch.Tensor, comm: Communicator) -> None:
        if self.lr is None:
            raise RuntimeError("scaffold: call attach(model, data, comm) before training (option II needs the "
                               "model's lr)")
        with torch.no_grad():
            updated = self.c_local - self.c
            if self.steps:
                updated.add_(self._trained(self.anchor) - self._trained(params), alpha=1.0 / (self.steps * self.lr))
            else:  # no local step: y_k = x and nothing is learned about the site
                updated = self.c_local.clone()
            buffer = torch.cat([params.reshape(-1), updated - self.c_local])
            self.c_local = updated
            self.reducer.weighted_sum(buffer, self.n_rows / self.total_rows, comm)
            n = params.numel()
            params.copy_(buffer[:n].view_as(params))
            self.c.add_(buffer[n:])


class FedDyn(_Anchored):
    """FedDyn (Acar et al., ICLR 2021, Algorithm 1, every site in every round).

    Site k minimises L_k(theta) - <grad_k, theta> + alpha/2 ||theta - theta_global||^2. The gradient of the two
    added terms, alpha (theta - theta_global) - grad_k, is added to the flat gradient after each backward pass,
    so any optimiser steps on the regularised objective. At the end of the round, with theta_k the site's model
    and theta the round's start:

        grad_k <- grad_k - alpha (theta_k - theta)               (each site, no traffic)
        avg    =  sum_k (n_k / N) theta_k                        (FedAvg's one Allreduce)
        h      <- h - alpha (avg - theta)                        (every rank alike)
        theta  <- avg - h / alpha

    The paper averages uniformly over sites. Here the weights are n_k / N, like the parameters. grad_k and h
    live on every rank and are checkpointed with it. Statistics entries take the plain average.

    Parameters
    ----------
    feddyn_alpha : float, default 0.01
        alpha, the weight of the dynamic regulariser (`federation.feddyn_alpha`).
    """

    name = "feddyn"

    def __init__(self, feddyn_alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = feddyn_alpha
        self.grad_local: torch.Tensor | None = None
        self.h: torch.Tensor | None = None

    def state(self) -> dict:
        return {"grad_local": self.grad_local, "h": self.h}

    def load_state(self, state: dict) -> None:
        self.grad_local, self.h = state["grad_local"], state["h"]

    def begin_round(self, params: torch.Tensor, trainable: torch.Tensor | None = None) -> None:
        super().begin_round(params, trainable)
        self.grad_local, self.h = self._zeros(params, self.grad_local), self._zeros(params, self.h)
        self.start = self._trained(self.anchor)

    def on_gradients(self, grad: torch.Tensor, rows: int, comm: Communicator) -> None:
        with torch.no_grad():
            term = self._trained(self.params) - self.start
            term.mul_(self.alpha).sub_(self.grad_local)
            self._add_trained(grad, term)

    def aggregate(self, params: torch.Tensor, comm: Communicator) -> None:
        with torch.no_grad():
            self.grad_local.sub_(self._trained(params) - self.start, alpha=self.alpha)
            super().aggregate(params, comm)
            average = self._trained(params).clone()
            self.h.sub_(average - self.start, alpha=self.alpha)
            self._set_trained(params, average.sub_(self.h, alpha=1.0 / self.alpha))


class FedAvgM(_Anchored):
    """FedAvg with server momentum (Hsu et al. 2019; Reddi et al. 2021 call it FedAvgM):

        delta = sum_k (n_k / N) theta_k - theta,   m <- beta m + delta,   theta <- theta + server_lr_momentum m

    beta = 0 and server_lr_momentum = 1 give FedAvg. The average is FedAvg's one Allreduce, and every rank takes
    the same step. The momentum lives on every rank and is checkpointed with it. Statistics take the plain
    average. `federation.server_lr` is FedOpt's Adam learning rate (default 0.01), not a momentum step size, so
    this strategy has a key of its own.

    Parameters
    ----------
    server_momentum : float, default 0.9
        beta (`federation.server_momentum`).
    server_lr_momentum : float, default 1.0
        The server's step size (`federation.server_lr_momentum`).
    """

    name = "fedavgm"

    def __init__(self, server_momentum: float = 0.9, server_lr_momentum: float = 1.0) -> None:
        super().__init__()
        self.momentum = server_momentum
        self.server_lr = server_lr_momentum
        self.m: torch.Tensor | None = None

    def state(self) -> dict:
        return {"m": self.m}

    def load_state(self, state: dict) -> None:
        self.m = state["m"]

    def begin_round(self, params: torch.Tensor, trainable: torch.Tensor | None = None) -> None:
        super().begin_round(params, trainable)
        self.m = self._zeros(params, self.m)

    def aggregate(self, params: torch.Tensor, comm: Communicator) -> None:
        with torch.no_grad():
            super().aggregate(params, comm)
            start = self._trained(self.anchor)
            self.m.mul_(self.momentum).add_(self._trained(params) - start)
            self._set_trained(params, start + self.server_lr * self.m)
