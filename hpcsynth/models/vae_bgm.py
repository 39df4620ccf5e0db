"""VAE-BGM: TVAE whose sampling prior is a Bayesian Gaussian mixture fitted to the encoded latent means after
training (Apellániz, Parras and Zazo, arXiv 2404.08434), so that samples come from where the rows actually lie
in latent space. Federated, the mixture is fitted by federated EM (`hpcsynth.data.mixture.FederatedBGM`) and
every site ends with the same prior; training itself is TVAE's, so every strategy applies unchanged.

The decoder was trained on posterior draws (mean plus the posterior's spread), never on the means alone: in
the dimensions the encoder leaves unused every posterior is the standard normal, and a ReLU decoder fed exactly
their mean (0) decodes other rows. So each draw from the mixture gets the rows' mean posterior variance added
per dimension: the prior is the aggregate posterior's mixture approximation. Without it, flchain's release had
an event rate of 0.47 against 0.30 (docs/survival.md).

Private (DP-VAE-BGM): training is TVAE's DP-SGD, and the prior is fitted once, after training, by DP-EM
(`hpcsynth.data.private_mixture.PrivateBGM`) with each site's own noise, plus one noisy release of the posterior
variances; these releases are planned in the accountant before training (`private_releases`), so DP-SGD is
calibrated to the rest of the budget. A second fit on the rows would release more than planned and is refused.
"""
from __future__ import annotations

import numpy as np
import torch

from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.data.mixture import FederatedBGM
from hpcsynth.data.private_mixture import MixtureNoise, PrivateBGM
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.models.protocol import OPTIMISER_PARAMETERS, documents_parameters
from hpcsynth.models.tvae import TVAE, VAE_PARAMETERS


@documents_parameters(VAE_PARAMETERS, OPTIMISER_PARAMETERS)
class VAEBGM(TVAE):
    """TVAE training; a Bayesian Gaussian mixture over the latent means as the sampling prior.

    Parameters
    ----------
    n_components : int, default 10
        Upper bound on the mixture's components (the Dirichlet-process prior prunes the unused ones).
    prior_noise_multiplier : float, default 50.0
        With privacy, z of the prior's DP-EM fit: each release of its statistics gets Gaussian noise of standard
        deviation z times the release's L2 sensitivity. The fit's 3 * (prior_iterations + 2) releases, and one of
        the posterior variances, enter the accountant ahead of DP-SGD (with the defaults they alone spend about
        epsilon 0.46 at delta 1e-5).
    prior_iterations : int, default 10
        With privacy, the EM iterations of the prior's fit, all of them run (three releases each).
    prior_clip : float, default 5.0
        With privacy, the L2 bound every latent mean is clipped to before the fit: the scale of the
        sensitivities (C for the weighted sums, C^2 for the weighted sums of squares). The posterior variances
        are clipped to [0, 1] per dimension for their own release (sensitivity sqrt(1 + latent_dim)).
    """

    name = "vae_bgm"
    private_finish = True
    _PRIOR = ("weight_concentration_a", "weight_concentration_b", "means", "covariances", "posterior_var")

    def __init__(self, *, epochs: int = 300, batch_size: int = 500, n_components: int = 10,
                 hidden: list[int] = (128, 128), latent_dim: int = 128, loss_factor: float = 2.0, lr: float = 1e-3,
                 weight_decay: float = 1e-5, optimizer: str = "adam", device: str = "auto", seed: int = 0,
                 categorical: list[str] = (), time: str | None = None, event: str | None = None,
                 numeric: str | None = None, precision: str = "fp32", compile: str | bool = "auto",
                 progress: bool = False, prior_noise_multiplier: float = 50.0, prior_iterations: int = 10,
                 prior_clip: float = 5.0) -> None:
        super().__init__(epochs=epochs, batch_size=batch_size, hidden=hidden, latent_dim=latent_dim,
                         loss_factor=loss_factor, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
                         device=device, seed=seed, categorical=categorical, time=time, event=event, numeric=numeric,
                         precision=precision, compile=compile, progress=progress)
        self.n_components = n_components
        self.prior_noise_multiplier = prior_noise_multiplier
        self.prior_iterations = prior_iterations
        self.prior_clip = prior_clip

    def setup(self, transformer: TableTransformer, stream: int = 0, local_rank: int = 0) -> VAEBGM:
        """TVAE's setup; the prior is fitted exactly until `make_private` gives this site its DP-EM noise."""
        super().setup(transformer, stream, local_rank)
        self.prior_noise_ = None
        return self

    def private_releases(self) -> list[tuple[float, float, int]]:
        """The prior's DP-EM fit and the posterior variances as one accountant history entry:
        (prior_noise_multiplier, 1.0, their releases)."""
        return [(self.prior_noise_multiplier, 1.0, PrivateBGM.releases(self.prior_iterations) + 1)]

    def make_private(self, mechanism) -> VAEBGM:
        """DP-SGD for training (TVAE's), and DP-EM with this site's own noise stream for the prior."""
        super().make_private(mechanism)
        self.prior_noise_ = MixtureNoise(self.prior_noise_multiplier, self.seed, self.stream_)
        return self

    def _fitted_arrays(self) -> dict[str, np.ndarray]:
        """The weights, the fitted mixture (its variational weight parameters, means and covariances) and the
        posterior variances added to its draws."""
        a, b = self.prior_.weight_concentration_
        prior = dict(zip(self._PRIOR, (a, b, self.prior_.means_, self.prior_.covariances_, self.posterior_var_)))
        return {**super()._fitted_arrays(), **{f"prior_{k}": v for k, v in prior.items()}}

    def _load_fitted_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super()._load_fitted_arrays(arrays)
        self.prior_ = FederatedBGM(n_components=self.n_components)
        a, b, self.prior_.means_, self.prior_.covariances_, self.posterior_var_ = (arrays[f"prior_{k}"]
                                                                                   for k in self._PRIOR)
        self.prior_.weight_concentration_ = (a, b)

    def finish(self, data: torch.Tensor, comm: Communicator | None = None) -> None:
        """Fit the latent prior on this site's encoded rows (collective when `comm` spans sites): the mixture
        over the latent means, and the mean posterior variance of every dimension."""
        comm = comm or SoloComm()
        prior = self._unfitted_prior()
        for m in self.modules_:
            m.eval()
        with torch.no_grad():
            means, logvar = self.encoder_(data)
        self.prior_ = prior.fit(means.double().cpu().numpy(), comm)
        self.posterior_var_ = self._posterior_variance(logvar.double().exp().cpu().numpy(), comm)

    def _posterior_variance(self, variances: np.ndarray, comm: Communicator) -> np.ndarray:
        """The rows' mean posterior variance per latent dimension, from sums over sites (collective). Private:
        each row's variances clipped to [0, 1] (the prior's is 1) and [count, sums] released once with this
        site's noise, of L2 sensitivity sqrt(1 + d)."""
        noise = self.prior_noise_
        if noise is not None:
            variances = np.clip(variances, 0.0, 1.0)
        stats = np.concatenate([[variances.shape[0]], variances.sum(axis=0)])
        total = comm.Allreduce(stats if noise is None else noise.perturb(stats, np.sqrt(stats.size)), "sum")
        mean = total[1:] / max(total[0], 1.0)
        return mean if noise is None else np.clip(mean, 0.0, 1.0)

    def _unfitted_prior(self) -> FederatedBGM:
        """Exact federated EM, or, when private, DP-EM with this site's noise; a private model fits once."""
        noise = self.prior_noise_
        if noise is None:
            return FederatedBGM(n_components=self.n_components)
        if noise.releases:
            raise RuntimeError("VAEBGM: the private prior was fitted already; the privacy budget plans one fit "
                               "(a second would release the rows' statistics again)")
        return PrivateBGM(noise, self.prior_clip, self.prior_iterations, self.seed, n_components=self.n_components)

    def _latent(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Latent draws from the fitted mixture (weights, means, diagonal covariances), each widened by the
        rows' mean posterior variance."""
        prior, device = self.prior_, self.device_
        weights = torch.as_tensor(prior.weights_ / prior.weights_.sum(), dtype=torch.float32, device=device)
        component = torch.multinomial(weights, n, replacement=True, generator=generator)
        means = torch.as_tensor(prior.means_, dtype=torch.float32, device=device)[component]
        scales = torch.as_tensor(np.sqrt(prior.covariances_ + self.posterior_var_), dtype=torch.float32,
                                 device=device)[component]
        return means + scales * torch.randn((n, self.latent_dim), generator=generator, device=device)
