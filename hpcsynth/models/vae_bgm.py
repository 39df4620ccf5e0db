"""VAE-BGM: TVAE whose sampling prior is a Bayesian Gaussian mixture fitted to the encoded latent means after
training (Apellániz, Parras and Zazo, arXiv 2404.08434), so that samples come from where the rows actually lie
in latent space. Federated, the mixture is fitted by federated EM (`hpcsynth.data.mixture.FederatedBGM`) and
every site ends with the same prior; training itself is TVAE's, so every strategy applies unchanged.
"""
from __future__ import annotations

import numpy as np
import torch

from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.data.mixture import FederatedBGM
from hpcsynth.models.protocol import OPTIMISER_PARAMETERS, documents_parameters
from hpcsynth.models.tvae import TVAE, VAE_PARAMETERS


@documents_parameters(VAE_PARAMETERS, OPTIMISER_PARAMETERS)
class VAEBGM(TVAE):
    """TVAE training; a Bayesian Gaussian mixture over the latent means as the sampling prior.

    Parameters
    ----------
    n_components : int, default 10
        Upper bound on the mixture's components (the Dirichlet-process prior prunes the unused ones).
    """

    name = "vae_bgm"
    dp_sgd = False  # its sampling prior is fitted on the exact latent means of the real rows
    _PRIOR = ("weight_concentration_a", "weight_concentration_b", "means", "covariances")

    def __init__(self, *, epochs: int = 300, batch_size: int = 500, n_components: int = 10,
                 hidden: list[int] = (128, 128), latent_dim: int = 128, loss_factor: float = 2.0, lr: float = 1e-3,
                 weight_decay: float = 1e-5, optimizer: str = "adam", device: str = "auto", seed: int = 0,
                 categorical: list[str] = (), time: str | None = None, event: str | None = None,
                 numeric: str | None = None, precision: str = "fp32", compile: str | bool = "auto",
                 progress: bool = False) -> None:
        super().__init__(epochs=epochs, batch_size=batch_size, hidden=hidden, latent_dim=latent_dim,
                         loss_factor=loss_factor, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
                         device=device, seed=seed, categorical=categorical, time=time, event=event, numeric=numeric,
                         precision=precision, compile=compile, progress=progress)
        self.n_components = n_components

    def _fitted_arrays(self) -> dict[str, np.ndarray]:
        """The weights and the fitted mixture (its variational weight parameters, means and covariances)."""
        a, b = self.prior_.weight_concentration_
        prior = dict(zip(self._PRIOR, (a, b, self.prior_.means_, self.prior_.covariances_)))
        return {**super()._fitted_arrays(), **{f"prior_{k}": v for k, v in prior.items()}}

    def _load_fitted_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super()._load_fitted_arrays(arrays)
        self.prior_ = FederatedBGM(n_components=self.n_components)
        a, b, self.prior_.means_, self.prior_.covariances_ = (arrays[f"prior_{k}"] for k in self._PRIOR)
        self.prior_.weight_concentration_ = (a, b)

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
