"""The strategy contract: every hook the round loop and the training job call, each with a correct no-op default.

A strategy decides how the sites' work is combined (as Flower's `Strategy`); the loop that calls it
(`hpcsynth.federated.loop`) and the job (`jobs/strategy_run.py`) know none by name. What a strategy supports is
declared on its class (the `ClassVar`s below) and read by config validation; it is never found with `hasattr`.
To add a strategy: subclass `Strategy` (or one of `hpcsynth.federated.strategies`), set `name` and the
declarations that differ from the defaults, override the hooks it needs, and add the class to
`hpcsynth.federated.registry`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.federated.counts import fit_counts
from hpcsynth.federated.records import RoundRecord

# checkpointing(model, shared) -> the per-round callback that checkpoints `model` (one row when `shared`)
Checkpointing = Callable[[Any, bool], Callable[[RoundRecord], None]]


class Reducer:
    """How a strategy sums a buffer over the ranks: a plain float reduction. Secure aggregation installs a masked
    one (`hpcsynth.federated.secure.MaskedSum`) in its place."""

    def weighted_sum(self, tensor: torch.Tensor, weight: float, comm: Communicator) -> None:
        """tensor <- sum over ranks of weight_k * tensor_k, in place: one reduction of one buffer (on a node, a
        shared-memory reduction with the weighting fused in; CPU tensors are reduced without a copy)."""
        with torch.no_grad():
            if tensor.device.type == "cpu":
                comm.weighted_sum(tensor.numpy(), weight)
                return
            tensor.mul_(weight)
            host = tensor.detach().cpu().numpy()
            comm.Allreduce(host, "sum")
            tensor.copy_(torch.from_numpy(host))


class Strategy:
    """The base of every strategy: trains every site alone and exchanges nothing (what `isolated` is).

    Attributes
    ----------
    site : Communicator
        The ranks of this rank's site (a `SoloComm` unless `SiteParallel` splits sites over several ranks).
    reducer : Reducer
        How the strategy sums buffers over the ranks (masked under `SecureAggregation`).
    """

    name: ClassVar[str] = "strategy"
    # -- declarations: what the strategy supports, read by config validation and the job ------------------------
    trains: ClassVar[frozenset[str]] = frozenset({"gradients"})  # the generators' `trains_by` values it applies to
    needs_latent: ClassVar[bool] = False  # only for generators that declare `has_latent`
    needs_normalisation: ClassVar[bool] = False  # only for generators that declare `normalised` (BatchNorm layers)
    needs_lr: ClassVar[bool] = False  # reads the generator's one local learning rate `lr` (a constructor option)
    supports_secure_aggregation: ClassVar[bool] = True  # its exchanges can go through pairwise masks
    dp_sgd_gap: ClassVar[str] = ""  # what it exchanges that DP-SGD does not cover ("" when DP-SGD covers all)
    site_parallel_gap: ClassVar[str] = ""  # why several ranks per site would change its result ("" when not)
    data_parallel: ClassVar[bool] = False  # already data-parallel over every rank: sites of several ranks need no wrap
    shares_model: ClassVar[bool] = False  # every site ends with the same model (the checkpoint keeps one row)
    pools_prior: ClassVar[bool] = False  # the sites fit one sampling prior together (`finish`)
    releases_per_site: ClassVar[bool] = True  # each site releases its own model's table, not one shared generator's
    phased: ClassVar[bool] = False  # brings its own workflow (`train`) instead of the round loop

    def __init__(self) -> None:
        self.site: Communicator = SoloComm()
        self.reducer: Reducer = Reducer()

    # -- the round loop's hooks -------------------------------------------------------------------------------
    def setup(self, n_rows: int, batch_size: int, comm: Communicator) -> None:
        """Once before training (collective): this rank's rows and the configured batch size."""
        self.n_rows, self.batch_size, self.total_rows = n_rows, batch_size, n_rows

    @property
    def batch_rows(self) -> int:
        """How many rows this rank puts in each step's batch."""
        return min(self.batch_size, self.n_rows)

    def steps_per_round(self, local_epochs: int) -> int:
        """How many optimiser steps a round has on this rank."""
        return local_epochs * max(1, -(-self.n_rows // self.batch_rows))

    def exchanges_per_round(self, local_epochs: int) -> int:
        """How many times a round aggregates: its steps run in this many near-equal stretches, each followed by
        `aggregate` (one per round unless a strategy averages more often)."""
        return 1

    def begin_round(self, params: torch.Tensor, trainable: torch.Tensor | None = None) -> None:
        """Before each round's local work; `trainable` marks the entries of `params` that gradient descent trains
        (the rest are statistics, e.g. BatchNorm's running moments), None when all are."""

    def on_gradients(self, grad: torch.Tensor, rows: int, comm: Communicator) -> None:
        """After every backward pass, before the optimiser step, on the flat gradient of a batch of `rows` rows."""

    def aggregate(self, params: torch.Tensor, comm: Communicator) -> None:
        """At the end of every round, on the flat parameter buffer (collective)."""

    # -- the job's hooks --------------------------------------------------------------------------------------
    def attach(self, model: Any, data: torch.Tensor, comm: Communicator) -> None:
        """Before training: bind the model and this rank's encoded rows (strategies on the model's latent space)."""

    def train(self, model: Any, data: torch.Tensor, comm: Communicator, rounds: int, local_epochs: int,
              batch_size: int, checkpointing: Checkpointing, make_model: Callable[[], Any],
              stop: Any = None) -> Any:
        """The phased workflow of a strategy that declares `phased` (collective); returns the model the site
        samples from. A strategy that is not phased trains through the round loop, so this returns `model`."""
        return model

    def fit_counts(self, model: Any, data: np.ndarray, comm: Communicator,
                   on_round: Callable[[RoundRecord], None] | None = None) -> list[RoundRecord]:
        """Fit a generator that learns from counts (collective): summed over every site when the strategy shares
        the model, else over this site's ranks."""
        return fit_counts(model, data, comm, comm if self.shares_model else self.site, on_round)

    def finish(self, model: Any, data: torch.Tensor, comm: Communicator) -> None:
        """After training, before sampling: what the model fits on its trained networks (VAE-BGM's prior), over
        every site when the strategy declares `pools_prior`, else over this site's ranks (collective)."""
        model.finish(data, comm if self.pools_prior else self.site)

    def state(self) -> dict:
        """What the strategy itself must keep across a restart (checkpointed with each site's state)."""
        return {}

    def load_state(self, state: dict) -> None:
        """Restore what `state` returned."""
