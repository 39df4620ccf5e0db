"""Synthetic-data sharing (`sd_sharing`): sites share synthetic rows instead of parameters.

The strategy of the published MDS comparison (isolated, FedAvg and synthetic-data sharing against
centralized): each site first trains alone (as `isolated`) and generates as many synthetic rows as it has real
ones; the synthetic tables are exchanged (they are the product, never real rows); then one global model is
trained on the pooled synthetic rows, data-parallel across the ranks (each rank a shard of the pooled table,
gradients averaged every step as in `centralized`), so every site ends with the same model. The two phases get
`rounds` rounds each, and `/rounds` lists them one after the other. With DP-SGD only the first phase touches
real rows; the second is post-processing, so the shared model reports the site models' privacy spend.

Resuming restarts the strategy from its first phase: its checkpoint mixes per-site and shared models.
"""
from __future__ import annotations

from typing import Callable

import pandas as pd
import torch

from hpcsynth.comm import Communicator, SoloComm, local_rank
from hpcsynth.federated.loop import RoundRecord, train_rounds
from hpcsynth.federated.preemption import StopRequest
from hpcsynth.federated.strategies import Centralized, Isolated, Strategy


class SDSharing(Strategy):
    """Local models, then a shared model trained on every site's synthetic rows."""

    name = "sd_sharing"
    shares_model = True

    def train(self, model, data: torch.Tensor, comm: Communicator, rounds: int, local_epochs: int,
              batch_size: int, checkpointing: Callable[[object, bool], Callable[[RoundRecord], None]],
              make_model: Callable[[], object], stop: StopRequest | None = None) -> object:
        """Both phases; returns the shared global model (a fresh one from `make_model`, the same seed).
        `checkpointing(model, shared)` gives the per-round callback that checkpoints `model`."""
        local = train_rounds(model, data, Isolated(), comm, rounds, local_epochs, batch_size,
                             on_round=checkpointing(model, False), stop=stop)
        spent = local[-1].epsilon if local else 0.0  # with DP-SGD: the most any site spent in phase 1
        model.finish(data, SoloComm())  # what a family fits after training, on the site alone (VAE-BGM's prior)
        pooled = pd.concat(comm.allgather(model.sample(int(data.shape[0]))), ignore_index=True)
        shard = pooled.iloc[comm.rank::comm.size].reset_index(drop=True)
        shared = make_model().setup(model.transformer_, stream=model.stream_, local_rank=local_rank())
        on_round = checkpointing(shared, True)

        def shifted(record: RoundRecord) -> None:
            record.round += rounds
            record.epsilon = max(record.epsilon, spent)  # training on synthetic rows spends nothing more
            on_round(record)

        train_rounds(shared, shared.to_device(model.transformer_.encode(shard)),
                     Centralized(secure_aggregation=self.secure_aggregation), comm, rounds, local_epochs, batch_size,
                     on_round=shifted, stop=stop)
        shared.privacy_ = model.privacy_  # post-processing of the private site models: theirs is its privacy record
        return shared
