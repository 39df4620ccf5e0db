"""Differentially private federated EM for the Bayesian Gaussian mixture (DP-EM by moment perturbation, Park,
Foulds, Chaudhuri and Welling, AISTATS 2017), on `FederatedBGM`'s updates.

Every row is first clipped to L2 norm at most C. Each EM iteration then releases the sufficient statistics of the
M-step, per component k: the responsibility sums N_k = sum_i r_ik, the weighted sums S1_k = sum_i r_ik x_i and the
weighted sums of squares S2_k = sum_i r_ik x_i^2 (elementwise: diagonal covariances). Adding or removing one row
changes them by its (r_i, r_i x_i, r_i x_i^2), whose L2 norms are at most 1, C and C^2 (sum_k r_ik = 1 and
||x^2|| <= ||x||^2 <= C^2), so each block is a Gaussian mechanism with noise N(0, (z s)^2) for its sensitivity s:
three releases of multiplier z per iteration. The priors' pooled moments (n, sum x, sum x^2) are released the same
way, and the start is public: centres drawn from the job's seed around the noisy pooled mean and spread, the rows
given to the nearest. Nothing else leaves a site: no extremes, no k-means, no log-likelihood. A fit of `n_iter`
iterations makes `releases(n_iter)` releases, entered in Opacus's accountant as one history entry
(z, 1.0, releases).

Federated, each site clips its own rows, adds its own noise to its own statistics, and only then are they summed
(one Allreduce per release round). The noise a site adds is enough on its own, so each site is private with respect
to its own rows whatever the other sites do; the sum, and every later E-step, which reads only released numbers
and the site's own rows, are post-processing and adaptive composition, both covered by the accountant. What is
noisy is made consistent with clipped rows before each M-step (post-processing): a component whose noisy count is
below one row gets no statistics (it falls back to the priors), its mean is kept in the ball of radius C and its
second moments between the mean's square and C^2.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.data.mixture import FederatedBGM, mixture_stats, moment_stats
from hpcsynth.data.private_stats import SiteNoise

_STREAM = 0x4247  # the purpose key of the prior's noise streams (the transform statistics use another)
_START = 0x5354  # the purpose key of the public starting centres


@dataclass
class MixtureNoise(SiteNoise):
    """One site's Gaussian noise for the DP-EM releases, from the stream of (seed, rank), and the releases made.

    Parameters
    ----------
    noise_multiplier : float
        z: each release's noise standard deviation over its L2 sensitivity.
    seed, rank : int
        The job's seed and this site's rank: the stream's key.
    """

    noise_multiplier: float
    seed: int
    rank: int
    releases: int = 0
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng([self.seed, self.rank, _STREAM])


def clip_rows(x: np.ndarray, bound: float) -> np.ndarray:
    """Each row scaled to L2 norm at most `bound` (rows within it unchanged)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x * np.minimum(1.0, bound / np.maximum(norms, np.finfo(np.float64).tiny))


class PrivateBGM(FederatedBGM):
    """`FederatedBGM` fitted by DP-EM: clipped rows, noisy statistics, a public start, `n_iter` iterations.

    Parameters
    ----------
    noise : MixtureNoise
        This site's noise (its multiplier z, its stream, the count of releases).
    clip : float
        The L2 bound C on every row.
    n_iter : int
        EM iterations after the first M-step; always all of them, as the accountant plans.
    seed : int
        Draws the public starting centres (the same on every site).
    n_components, weight_concentration_prior, reg_covar
        As `FederatedBGM`.
    """

    def __init__(self, noise: MixtureNoise, clip: float, n_iter: int, seed: int, n_components: int = 10,
                 weight_concentration_prior: float = 1e-3, reg_covar: float = 1e-6) -> None:
        super().__init__(n_components=n_components, weight_concentration_prior=weight_concentration_prior,
                         reg_covar=reg_covar)
        self.noise, self.clip, self.n_iter, self.seed = noise, clip, n_iter, seed

    @staticmethod
    def releases(n_iter: int) -> int:
        """The releases of one fit: three blocks each for the moments, the first M-step and every iteration."""
        return 3 * (n_iter + 2)

    def fit(self, x: np.ndarray, comm: Communicator | None = None) -> PrivateBGM:
        """Collective: every site calls it with its own rows and ends with the same mixture."""
        comm = comm or SoloComm()
        x = clip_rows(self._rows(x), self.clip)
        d = x.shape[1]
        moments = self._noisy_sum(moment_stats(x), [1, d, d], comm)
        moments[0] = max(moments[0], 1.0)  # a noisy count below one row: as if one
        self.set_priors(moments)
        return self.fit_from(x, self._public_start(x), comm, n_iter=self.n_iter)

    def _public_start(self, x: np.ndarray) -> np.ndarray:
        """One-hot responsibilities of the nearest of `n_components` centres drawn from the seed around the
        (noisy) pooled mean and spread: no further release."""
        draws = np.random.default_rng([self.seed, _START]).standard_normal((self.n_components, x.shape[1]))
        centres = self.mean_prior_ + np.sqrt(self.covariance_prior_) * draws
        labels = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
        return np.eye(self.n_components)[labels]

    def _noisy_sum(self, stats: np.ndarray, sizes: list[int], comm: Communicator) -> np.ndarray:
        """Blocks (counts, sums, sums of squares) of `stats`, each noised for its sensitivity (1, C, C^2), summed
        over sites (collective: one Allreduce)."""
        blocks = np.split(stats, np.cumsum(sizes)[:-1])
        noisy = [self.noise.perturb(b, self.clip ** power) for power, b in enumerate(blocks)]
        return comm.Allreduce(np.concatenate(noisy), "sum")

    def _merged(self, x: np.ndarray, resp: np.ndarray, log_norm_sum: float, comm: Communicator) -> np.ndarray:
        """The noisy sums of N_k, S1_k, S2_k; the log-likelihood is not released (NaN)."""
        k, d = resp.shape[1], x.shape[1]
        stats = self._noisy_sum(mixture_stats(x, resp)[:-1], [k, k * d, k * d], comm)
        return np.concatenate([stats, [np.nan]])

    def _m_step(self, stats: np.ndarray, k: int, d: int) -> None:
        """The M-step on statistics made consistent with rows in the ball of radius C (post-processing): a
        component whose noisy count is below one row keeps none (its priors alone); S1 / N, a mean, is moved
        into the ball; S2 / N lies between the mean's square (a variance is never negative) and C^2."""
        nk = np.where(stats[:k] >= 1.0, stats[:k], 0.0)
        room = self.clip * nk[:, None]
        s1 = stats[k:k + k * d].reshape(k, d)
        s1 = s1 * np.minimum(1.0, room / np.maximum(np.linalg.norm(s1, axis=1, keepdims=True), 1e-300))
        s2 = stats[k + k * d:k + 2 * k * d].reshape(k, d)
        s2 = np.clip(s2, s1**2 / np.maximum(nk, 1.0)[:, None], self.clip * room)
        super()._m_step(np.concatenate([nk, s1.ravel(), s2.ravel(), stats[k + 2 * k * d:]]), k, d)
