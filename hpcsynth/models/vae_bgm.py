"""VAE-BGM: a tabular VAE whose sampling prior is a Bayesian Gaussian mixture fitted to the encoded latent means
after training (Apellániz, Parras and Zazo, "An improved tabular data generator with VAE-GMM integration",
arXiv 2404.08434).

A VAE trained with a standard-normal prior leaves holes and clusters in its aggregate posterior: decoding
N(0, I) then wastes samples in empty regions and under-samples small subgroups. Fitting a mixture to where the
training rows actually land in latent space, and sampling from it, repairs that without touching training.
Sampling is direct (pick a component by its weight, draw from its diagonal Gaussian): there is no rejection
loop that could stall.

Federated: the mixture is fitted by federated EM (`hpcsynth.federated.em.FederatedBGM`): each site encodes its
own rows, the sufficient statistics are summed with one Allreduce per EM iteration, and every site ends with
the same prior. Isolated sites fit their own. Training itself is TVAE's, so every strategy applies unchanged.
"""
from __future__ import annotations

import numpy as np
import torch

from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.federated.em import FederatedBGM
from hpcsynth.models.tvae import TVAE


class VAEBGM(TVAE):
    """TVAE training; a Bayesian Gaussian mixture over the latent means as the sampling prior."""

    name = "vae_bgm"
    dp_sgd = False  # its sampling prior is fitted on the exact latent means of the real rows

    def __init__(self, epochs: int = 300, batch_size: int = 500, n_components: int = 10, **kwargs) -> None:
        super().__init__(epochs=epochs, batch_size=batch_size, **kwargs)
        self.n_components = n_components

    def finish(self, data: torch.Tensor, comm: Communicator | None = None) -> None:
        """Fit the latent prior on this site's encoded rows (collective when `comm` spans sites)."""
        for m in self.modules_:
            m.eval()
        with torch.no_grad():
            means, _ = self.encoder_(data)
        self.prior_ = FederatedBGM(n_components=self.n_components).fit(means.double().cpu().numpy(), comm or SoloComm())

    def _latent(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Latent draws from the fitted mixture (weights, means, diagonal covariances)."""
        prior, device = self.prior_, self.device_
        weights = torch.as_tensor(prior.weights_ / prior.weights_.sum(), dtype=torch.float32, device=device)
        component = torch.multinomial(weights, n, replacement=True, generator=generator)
        means = torch.as_tensor(prior.means_, dtype=torch.float32, device=device)[component]
        scales = torch.as_tensor(np.sqrt(prior.covariances_), dtype=torch.float32, device=device)[component]
        return means + scales * torch.randn((n, self.latent_dim), generator=generator, device=device)
