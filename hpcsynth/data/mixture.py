"""Federated EM for a variational Bayesian Gaussian mixture (diagonal covariances, Dirichlet-process weights).

Scikit-learn's `BayesianGaussianMixture` with its priors and variational updates, fitted from sufficient
statistics (per component: N_k, sum r x, sum r x^2) that every site computes on its own rows and one Allreduce
sums per iteration, so every site ends with the same mixture, equal to the pooled fit up to summation order, and
no row leaves its site. The k-means initialisation and the convergence test use summed numbers too, so all sites
run the same iterations. Used by mode-specific normalisation and by VAE-BGM's latent prior. Design notes:
docs/notes/models.md.
"""
from __future__ import annotations

import numpy as np
from scipy.special import digamma

from hpcsynth.comm import Communicator, SoloComm


def moment_stats(x: np.ndarray) -> np.ndarray:
    """[n, sum x (d values), sum x^2 (d values)] of this site's rows (n, d)."""
    return np.concatenate([[x.shape[0]], x.sum(axis=0), (x * x).sum(axis=0)]).astype(np.float64)


def extreme_stats(x: np.ndarray) -> np.ndarray:
    """[min (d values), -max (d values)]: reduced with MIN over sites; +inf for a site without rows."""
    if x.shape[0] == 0:
        return np.full(2 * x.shape[1], np.inf)
    return np.concatenate([x.min(axis=0), -x.max(axis=0)])


def kmeans_stats(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Per centre: [count, sum x (d values)] of the rows nearest to it, flattened (k * (1 + d))."""
    labels = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
    onehot = np.eye(len(centres))[labels]
    return np.concatenate([onehot.sum(axis=0)[:, None], onehot.T @ x], axis=1).ravel()


def mixture_stats(x: np.ndarray, resp: np.ndarray, log_prob_norm_sum: float = 0.0) -> np.ndarray:
    """[N_k (k), S1_k (k * d), S2_k (k * d), sum of log p(x_i)] flattened, for one Allreduce."""
    return np.concatenate([resp.sum(axis=0), (resp.T @ x).ravel(), (resp.T @ (x * x)).ravel(),
                           [log_prob_norm_sum]])


class FederatedBGM:
    """Variational Bayesian Gaussian mixture with diagonal covariances and a Dirichlet-process weight prior.

    `fit(x, comm)` is collective: every site calls it with its own rows and ends with the same fitted state
    (`weights_`, `means_`, `covariances_`; `mean_log_likelihood_` of the pooled rows as a diagnostic).
    Defaults are SDV's for mode-specific normalisation: up to 10 components, weight concentration prior 0.001
    (few components survive), 100 iterations at most. The weights prune slowly under that prior, so fits usually
    run all 100 iterations, as scikit-learn's do for SDV.
    """

    def __init__(self, n_components: int = 10, weight_concentration_prior: float = 1e-3, max_iter: int = 100,
                 tol: float = 1e-4, reg_covar: float = 1e-6, kmeans_iter: int = 10) -> None:
        self.n_components = n_components
        self.weight_concentration_prior = weight_concentration_prior
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.kmeans_iter = kmeans_iter

    # -- fitting (collective) -------------------------------------------------------------------------------
    def fit(self, x: np.ndarray, comm: Communicator | None = None) -> FederatedBGM:
        comm = comm or SoloComm()
        x = self._rows(x)
        self.set_priors(comm.Allreduce(moment_stats(x), "sum"))
        extremes = comm.Allreduce(extreme_stats(x), "min")
        resp = self.initial_responsibilities(x, extremes, comm)
        return self.fit_from(x, resp, comm)

    @staticmethod
    def _rows(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x[:, None] if x.ndim == 1 else x

    def set_priors(self, moments: np.ndarray) -> None:
        """scikit-learn's default priors from the pooled moments: mean prior = pooled mean, mean precision 1,
        degrees of freedom = d, covariance prior = pooled variance (ddof=1)."""
        d = (moments.size - 1) // 2
        n, total, squares = moments[0], moments[1:1 + d], moments[1 + d:]
        if n < 1:
            raise ValueError("FederatedBGM: no rows on any site")
        self.mean_prior_ = total / n
        self.covariance_prior_ = np.maximum(squares - n * self.mean_prior_**2, 0.0) / max(n - 1.0, 1.0)
        self.mean_precision_prior_ = 1.0
        self.degrees_of_freedom_prior_ = float(d)

    def initial_responsibilities(self, x: np.ndarray, extremes: np.ndarray, comm: Communicator) -> np.ndarray:
        """One-hot nearest-centre responsibilities after federated Lloyd iterations (same centres everywhere)."""
        d = x.shape[1]
        low, high = extremes[:d], -extremes[d:]
        centres = low + np.linspace(0.0, 1.0, self.n_components)[:, None] * (high - low)
        for _ in range(self.kmeans_iter):
            stats = comm.Allreduce(kmeans_stats(x, centres), "sum").reshape(self.n_components, 1 + d)
            counts = stats[:, :1]
            centres = np.where(counts > 0, stats[:, 1:] / np.maximum(counts, 1.0), centres)
        labels = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
        return np.eye(self.n_components)[labels]

    def fit_from(self, x: np.ndarray, resp: np.ndarray, comm: Communicator | None = None,
                 n_iter: int | None = None) -> FederatedBGM:
        """EM from given responsibilities: the M-step on summed statistics, then E-steps until the pooled mean
        weights change by less than `tol` (or exactly `n_iter` iterations when given)."""
        comm = comm or SoloComm()
        x = self._rows(x)
        k, d = self.n_components, x.shape[1]
        self._m_step(self._merged(x, resp, 0.0, comm), k, d)
        self.converged_ = False
        iterations = self.max_iter if n_iter is None else n_iter
        for self.n_iter_ in range(1, iterations + 1):
            previous = self.weights_
            log_resp, log_norm = self._e_step(x)
            stats = self._merged(x, np.exp(log_resp), float(log_norm.sum()), comm)
            self._m_step(stats, k, d)
            self.mean_log_likelihood_ = stats[-1] / max(stats[:k].sum(), 1.0)
            if n_iter is None and np.abs(self.weights_ - previous).max() < self.tol:
                self.converged_ = True
                break
        return self

    def _merged(self, x: np.ndarray, resp: np.ndarray, log_norm_sum: float, comm: Communicator) -> np.ndarray:
        """The sites' summed `mixture_stats` of their rows under `resp` (collective: one Allreduce)."""
        return comm.Allreduce(mixture_stats(x, resp, log_norm_sum), "sum")

    def _m_step(self, stats: np.ndarray, k: int, d: int) -> None:
        """The variational updates of scikit-learn's `_m_step` for diagonal covariances, from summed statistics."""
        nk = stats[:k] + 10 * np.finfo(np.float64).eps
        xk = stats[k:k + k * d].reshape(k, d) / nk[:, None]
        sk = stats[k + k * d:k + 2 * k * d].reshape(k, d) / nk[:, None] - xk**2 + self.reg_covar
        tail = np.concatenate([np.cumsum(nk[::-1])[-2::-1], [0.0]])
        self.weight_concentration_ = (1.0 + nk, self.weight_concentration_prior + tail)
        self.mean_precision_ = self.mean_precision_prior_ + nk
        self.means_ = (self.mean_precision_prior_ * self.mean_prior_ + nk[:, None] * xk) / self.mean_precision_[:, None]
        self.degrees_of_freedom_ = self.degrees_of_freedom_prior_ + nk
        diff = xk - self.mean_prior_
        shrink = (self.mean_precision_prior_ / self.mean_precision_)[:, None]
        self.covariances_ = ((self.covariance_prior_ + nk[:, None] * (sk + shrink * diff**2))
                             / self.degrees_of_freedom_[:, None])

    # -- inference (local) ----------------------------------------------------------------------------------
    def _weighted_log_prob(self, x: np.ndarray) -> np.ndarray:
        """E[log pi_k] + E[log N(x | mu_k, Lambda_k)] under the variational posterior (scikit-learn's)."""
        d = x.shape[1]
        a, b = self.weight_concentration_
        digamma_sum = digamma(a + b)
        log_weights = digamma(a) - digamma_sum + np.concatenate([[0.0], np.cumsum(digamma(b) - digamma_sum)[:-1]])
        precisions = 1.0 / self.covariances_
        log_det = 0.5 * np.log(precisions).sum(axis=1)
        quad = (self.means_**2 * precisions).sum(1) - 2.0 * x @ (self.means_ * precisions).T + (x * x) @ precisions.T
        log_gauss = -0.5 * (d * np.log(2 * np.pi) + quad) + log_det - 0.5 * d * np.log(self.degrees_of_freedom_)
        log_lambda = d * np.log(2.0) + digamma(0.5 * (self.degrees_of_freedom_ - np.arange(d)[:, None])).sum(0)
        return log_gauss + 0.5 * (log_lambda - d / self.mean_precision_) + log_weights

    def _e_step(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        weighted = self._weighted_log_prob(x)
        peak = weighted.max(axis=1, keepdims=True)  # logsumexp by hand: scipy's costs 5 ms a call here
        shifted = weighted - peak
        log_norm = np.log(np.exp(shifted).sum(axis=1)) + peak[:, 0]
        return shifted - (log_norm - peak[:, 0])[:, None], log_norm

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Posterior responsibilities of every component for each row."""
        return np.exp(self._e_step(self._rows(x))[0])

    @property
    def weights_(self) -> np.ndarray:
        """Expected mixture weights under the stick-breaking posterior (scikit-learn's `weights_`)."""
        a, b = self.weight_concentration_
        total = a + b
        weights = a / total * np.concatenate([[1.0], np.cumprod(b / total)[:-1]])
        return weights / weights.sum()
