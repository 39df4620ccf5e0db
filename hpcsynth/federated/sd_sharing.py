"""Synthetic-data sharing (`sd_sharing`): sites share synthetic rows instead of parameters.

The strategy of the published MDS comparison (isolated, FedAvg and synthetic-data sharing against
centralized): each site first trains alone (as `isolated`) and generates as many synthetic rows (or patients,
for a sequence generator) as it has real ones; the synthetic releases are exchanged (they are the product, never
real rows); then one global model is trained on the pooled synthetic records, data-parallel across the ranks
(each rank a shard of the pool, `hpcsynth.data.releases`; gradients averaged every step as in `centralized`), so
every site ends with the same model; what it fits after training (VAE-BGM's prior) it fits on the same pooled
synthetic records. The two phases get
`rounds` rounds each, and `/rounds` lists them one after the other. With DP-SGD only the first phase touches
real rows; the second is post-processing, so the shared model reports the site models' privacy spend. With
several ranks per site the first phase is data-parallel inside each site. Resuming restarts from the first phase.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from hpcsynth.comm import Communicator, local_rank
from hpcsynth.data.releases import pool, shard
from hpcsynth.federated.loop import train_rounds
from hpcsynth.federated.preemption import StopRequest
from hpcsynth.federated.records import RoundRecord
from hpcsynth.federated.strategies import Centralized, Isolated
from hpcsynth.federated.strategy import Checkpointing, Strategy
from hpcsynth.federated.wrappers import within_site


class SDSharing(Strategy):
    """Local models, then a shared model trained on every site's synthetic rows."""

    name = "sd_sharing"
    shares_model = True
    pools_prior = True
    releases_per_site = False
    phased = True

    def train(self, model: Any, data: torch.Tensor, comm: Communicator, rounds: int, local_epochs: int,
              batch_size: int, checkpointing: Checkpointing, make_model: Callable[[], Any],
              stop: StopRequest | None = None) -> Any:
        """Both phases; returns the shared global model (a fresh one from `make_model`, the same seed).
        `checkpointing(model, shared)` gives the per-round callback that checkpoints `model`."""
        alone = within_site(Isolated(), self.site)
        local = train_rounds(model, data, alone, comm, rounds, local_epochs, batch_size,
                             on_round=checkpointing(model, False), stop=stop)
        spent = local[-1].epsilon if local else 0.0  # with DP-SGD: the most any site spent in phase 1
        alone.finish(model, data, comm)  # what a family fits after training, per site (VAE-BGM's prior)
        mine = shard(pool(comm.allgather(model.sample(int(data.shape[0])))), comm.rank, comm.size)
        shared = make_model().setup(model.transformer_, stream=model.stream_, local_rank=local_rank())
        on_round = checkpointing(shared, True)

        def shifted(record: RoundRecord) -> None:
            record.round += rounds
            record.epsilon = max(record.epsilon, spent)  # training on synthetic rows spends nothing more
            on_round(record)

        pooled_training = Centralized()
        pooled_training.reducer = self.reducer  # masked too when the sites aggregate securely
        self.synthetic_rows = shared.to_device(model.transformer_.encode(mine))
        train_rounds(shared, self.synthetic_rows, pooled_training, comm, rounds, local_epochs, batch_size,
                     on_round=shifted, stop=stop)
        shared.privacy_ = model.privacy_  # post-processing of the private site models: theirs is its privacy record
        return shared

    def finish(self, model: Any, data: torch.Tensor, comm: Communicator) -> None:
        """The shared model's prior over every site, on this rank's share of the pooled synthetic records it was
        trained on, not on the real rows `data`: like its training, it reads no real row and spends nothing."""
        model.finish(self.synthetic_rows, comm)
