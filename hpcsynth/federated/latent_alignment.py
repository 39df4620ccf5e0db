"""Latent alignment (`latent_alignment`): site encoders, one shared latent space, a shared decoder and prior.

In the spirit of FedEHR-Gen (arXiv 2605.27892): when hospitals differ, forcing one encoder on all of them (as
FedAvg does) blurs each site's case mix, while isolated models cannot pool what the sites have in common. Here
each site keeps its own encoder and the sites agree on what the latent space means (see `LatentAlignment`).
It applies to generators that declare `has_latent` (TVAE, VAE-BGM: an encoder, then a decoder in the flat buffer).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hpcsynth.comm import Communicator
from hpcsynth.federated.strategies import FedAvg


class LatentAlignment(FedAvg):
    """Local encoders; decoder averaged; latent moments matched to the pooled ones; pooled latent prior.

    - the decoder is averaged across sites every round (size-weighted, one Allreduce of its slice of the flat
      buffer), so one decoder reads every site's latent codes;
    - the latent distributions are aligned by matching merged latent statistics: at the start of every round
      each site sums the first two moments of its rows' latent means, one Allreduce gives the pooled moments, and
      the local loss adds  weight * (||mean_b - mean_pooled||^2 + ||var_b - var_pooled||^2)  over each batch b,
      pulling every site's aggregate posterior onto the pooled one;
    - the sampling prior is the pooled latent Gaussian N(mean_pooled, var_pooled) (the aggregated prior), the same
      at every site.

    Parameters
    ----------
    alignment_weight : float, default 1.0
        Weight of the latent-moment matching penalty (`federation.alignment_weight`).
    """

    name = "latent_alignment"
    trains = frozenset({"gradients"})
    needs_latent = True
    dp_sgd_gap = "the exact latent moments of the real rows every round"
    site_parallel_gap = ("its penalty is computed on each batch's latent moments, which a site's shards do not "
                         "reproduce")
    shares_model = False  # the encoders stay per site: checkpoints keep one row of parameters per site
    pools_prior = True

    def __init__(self, alignment_weight: float = 1.0) -> None:
        super().__init__()
        self.alignment_weight = alignment_weight

    def attach(self, model: Any, data: torch.Tensor, comm: Communicator) -> None:
        """Bind the model whose latent space is aligned (the job calls this before training)."""
        if not model.has_latent:
            raise ValueError(f"federation.strategy: latent_alignment needs a VAE family (tvae, vae_bgm), "
                             f"not {type(model).__name__}")
        self.model, self.data, self.comm = model, data, comm
        self.decoder_start = sum(p.numel() for p in model.encoder_.parameters())

    def begin_round(self, params: torch.Tensor, trainable: torch.Tensor | None = None) -> None:
        """Pool the latent moments of every site's rows and set them as this round's alignment target."""
        with torch.no_grad():
            means, _ = self.model.encoder_(self.data)
        mu = means.double().cpu().numpy()
        stats = np.concatenate([[len(mu)], mu.sum(0), (mu * mu).sum(0)])
        self.reducer.weighted_sum(torch.from_numpy(stats), 1.0, self.comm)  # masked too under secure aggregation
        n, d = stats[0], mu.shape[1]
        mean = stats[1:1 + d] / n
        var = np.maximum(stats[1 + d:] / n - mean**2, 1e-6)
        device = params.device
        self.model.latent_target_ = (torch.as_tensor(mean, dtype=torch.float32, device=device),
                                     torch.as_tensor(var, dtype=torch.float32, device=device),
                                     self.alignment_weight)

    def aggregate(self, params: torch.Tensor, comm: Communicator) -> None:
        """Average the decoder only: the encoders stay with their sites."""
        self.reducer.weighted_sum(params[self.decoder_start:], self.n_rows / self.total_rows, comm)
