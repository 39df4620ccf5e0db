"""Wrappers: a strategy around a strategy, forwarding every hook (`Wrapper`) and changing one thing.

SiteParallel        sites larger than one rank (`federation.ranks_per_site: R`): data-parallel inside a site,
                    the wrapped strategy across sites.
SecureAggregation   every sum the wrapped strategy makes goes through pairwise masks (`federation.secure_aggregation`).
A wrapper reaches the strategy it wraps only through the contract, so it applies to every strategy alike; what it
cannot reproduce it declares (`trains`, `dp_sgd_gap`), and config validation refuses those combinations.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from hpcsynth.comm import Communicator
from hpcsynth.federated.records import RoundRecord
from hpcsynth.federated.secure import MaskedSum, PairwiseMasks
from hpcsynth.federated.strategy import Checkpointing, Reducer, Strategy


class Wrapper(Strategy):
    """Forwards every hook and the runtime declarations to `inner`; subclasses override what they change.

    The support declarations (`trains`, `needs_latent`, the gaps) stay class-level: on a wrapper they describe
    the wrapper itself, and config validation reads the wrapped strategy's class and the wrapper's apart.

    Parameters
    ----------
    inner : Strategy
        The wrapped strategy (itself possibly a wrapper).
    """

    def __init__(self, inner: Strategy) -> None:  # no Strategy.__init__: `site` and `reducer` are the inner's
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def shares_model(self) -> bool:
        return self.inner.shares_model

    @property
    def pools_prior(self) -> bool:
        return self.inner.pools_prior

    @property
    def phased(self) -> bool:
        return self.inner.phased

    @property
    def releases_per_site(self) -> bool:
        return self.inner.releases_per_site

    @property
    def data_parallel(self) -> bool:
        return self.inner.data_parallel

    @property
    def site(self) -> Communicator:
        return self.inner.site

    @site.setter
    def site(self, site: Communicator) -> None:
        self.inner.site = site

    @property
    def reducer(self) -> Reducer:
        return self.inner.reducer

    @reducer.setter
    def reducer(self, reducer: Reducer) -> None:
        self.inner.reducer = reducer

    def setup(self, n_rows: int, batch_size: int, comm: Communicator) -> None:
        self.inner.setup(n_rows, batch_size, comm)

    @property
    def batch_rows(self) -> int:
        return self.inner.batch_rows

    def steps_per_round(self, local_epochs: int) -> int:
        return self.inner.steps_per_round(local_epochs)

    def exchanges_per_round(self, local_epochs: int) -> int:
        return self.inner.exchanges_per_round(local_epochs)

    def begin_round(self, params: torch.Tensor, trainable: torch.Tensor | None = None) -> None:
        self.inner.begin_round(params, trainable)

    def on_gradients(self, grad: torch.Tensor, rows: int, comm: Communicator) -> None:
        self.inner.on_gradients(grad, rows, comm)

    def aggregate(self, params: torch.Tensor, comm: Communicator) -> None:
        self.inner.aggregate(params, comm)

    def attach(self, model: Any, data: torch.Tensor, comm: Communicator) -> None:
        self.inner.attach(model, data, comm)

    def train(self, model: Any, data: torch.Tensor, comm: Communicator, rounds: int, local_epochs: int,
              batch_size: int, checkpointing: Checkpointing, make_model: Callable[[], Any],
              stop: Any = None) -> Any:
        return self.inner.train(model, data, comm, rounds, local_epochs, batch_size, checkpointing, make_model, stop)

    def fit_counts(self, model: Any, data: np.ndarray, comm: Communicator,
                   on_round: Callable[[RoundRecord], None] | None = None) -> list[RoundRecord]:
        return self.inner.fit_counts(model, data, comm, on_round)

    def finish(self, model: Any, data: torch.Tensor, comm: Communicator) -> None:
        self.inner.finish(model, data, comm)

    def state(self) -> dict:
        return self.inner.state()

    def load_state(self, state: dict) -> None:
        self.inner.load_state(state)


class SiteParallel(Wrapper):
    """A strategy for sites of several ranks: each rank trains on its shard of the site's rows.

    Every step the shard gradients are averaged inside the site (one reduction on the site's communicator,
    weighted by shard batch sizes), so the ranks of a site take the step one rank would take on the site's batch
    and hold the same parameters. The wrapped strategy then combines sites as with one rank per site, on the world
    communicator with every rank weighted by its shard: since the ranks of a site hold identical parameters,
    sum_k sum_r (n_kr / N) theta_k = sum_k (n_k / N) theta_k. Its site-level work (counts, the sampling prior, a
    phased workflow's local phase) runs on `site`, which the wrapper gives it.

    Parameters
    ----------
    inner : Strategy
        The per-site strategy.
    site : Communicator
        The ranks of this rank's site.
    """

    dp_sgd_gap: ClassVar[str] = "per-shard clipping and noise, which the accountant does not model"

    def __init__(self, inner: Strategy, site: Communicator) -> None:
        super().__init__(inner)
        self.site = site

    def setup(self, n_rows: int, batch_size: int, comm: Communicator) -> None:
        self.n_rows = n_rows
        self.site_rows = int(self.site.Allreduce(np.array([float(n_rows)]), "sum")[0])
        self.site_batch = min(batch_size, self.site_rows)
        self.inner.setup(n_rows, batch_size, comm)
        self.site_batch_rows = int(self.site.Allreduce(np.array([float(self.batch_rows)]), "sum")[0])

    @property
    def batch_rows(self) -> int:
        """This rank's share of the site's batch, in proportion to its shard (at least one row)."""
        return int(min(max(round(self.site_batch * self.n_rows / self.site_rows), 1), self.n_rows))

    def steps_per_round(self, local_epochs: int) -> int:
        """The same on every rank of a site: passes over the site's rows, not the shard's."""
        return local_epochs * max(1, -(-self.site_rows // self.site_batch))

    def on_gradients(self, grad: torch.Tensor, rows: int, comm: Communicator) -> None:
        Reducer().weighted_sum(grad, rows / self.site_batch_rows, self.site)  # inside one site: never masked
        self.inner.on_gradients(grad, rows, comm)


def within_site(strategy: Strategy, site: Communicator) -> Strategy:
    """`strategy` for sites of `site.size` ranks: wrapped in `SiteParallel`, unless a site is one rank or the
    strategy is data-parallel over every rank already."""
    if site.size == 1 or strategy.data_parallel:
        return strategy
    return SiteParallel(strategy, site)


class SecureAggregation(Wrapper):
    """Every sum of the wrapped strategy through pairwise masks (`hpcsynth.federated.secure`): the ranks agree on
    masks once, before the first exchange, and the strategy's reducer becomes `MaskedSum`. Still one Allreduce of
    one buffer per sum, of uint64 fixed-point values (8 bytes a value).

    Parameters
    ----------
    inner : Strategy
        The strategy whose exchanges are masked.
    """

    trains: ClassVar[frozenset[str]] = frozenset({"gradients"})  # counts are summed unmasked

    def _agree(self, comm: Communicator) -> None:
        """Agree on masks over `comm` once (collective), unless alone."""
        if comm.size > 1 and not isinstance(self.reducer, MaskedSum):
            self.reducer = MaskedSum(PairwiseMasks.agree(comm))

    def setup(self, n_rows: int, batch_size: int, comm: Communicator) -> None:
        self._agree(comm)
        self.inner.setup(n_rows, batch_size, comm)

    def train(self, model: Any, data: torch.Tensor, comm: Communicator, rounds: int, local_epochs: int,
              batch_size: int, checkpointing: Checkpointing, make_model: Callable[[], Any],
              stop: Any = None) -> Any:
        self._agree(comm)
        return self.inner.train(model, data, comm, rounds, local_epochs, batch_size, checkpointing, make_model, stop)
