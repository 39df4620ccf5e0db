"""Sites larger than one rank (`federation.ranks_per_site: R`): data-parallel inside a site, the strategy
across sites.

The world is split into sites of R consecutive ranks; each rank of a site trains on its shard of the site's
rows. Every step the shard gradients are averaged inside the site (one Allreduce on the site's communicator,
weighted by shard batch sizes), so the R ranks take the same step a single rank would take on the site's
batch, and hold the same parameters. The wrapped strategy then combines sites exactly as with one rank per
site: it runs on the world communicator with every rank weighted by its shard, and since the ranks of a site
hold identical parameters, sum_k sum_r (n_kr / N) theta_k = sum_k (n_k / N) theta_k, the one-rank-per-site
result. (A leaders-only Allreduce followed by a broadcast inside each site gives the same numbers; one world
Allreduce keeps the strategies unchanged.)
"""
from __future__ import annotations

import numpy as np
import torch

from hpcsynth.comm import Communicator
from hpcsynth.federated.strategies import Strategy, _reduce_tensor


class SiteParallel(Strategy):
    """Wraps a per-site strategy for sites of several ranks (`site` is the communicator of this rank's site)."""

    def __init__(self, inner: Strategy, site: Communicator) -> None:
        super().__init__()
        self.inner, self.site = inner, site
        self.name, self.shares_model = inner.name, inner.shares_model

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

    def begin_round(self, params: torch.Tensor, trainable: torch.Tensor | None = None) -> None:
        self.inner.begin_round(params, trainable)

    def on_gradients(self, grad: torch.Tensor, rows: int, comm: Communicator) -> None:
        with torch.no_grad():
            grad.mul_(rows / self.site_batch_rows)
            _reduce_tensor(grad, self.site)
        self.inner.on_gradients(grad, rows, comm)

    def aggregate(self, params: torch.Tensor, comm: Communicator) -> None:
        self.inner.aggregate(params, comm)

    def state(self) -> dict:
        return self.inner.state()

    def load_state(self, state: dict) -> None:
        self.inner.load_state(state)
