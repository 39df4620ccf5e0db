"""Mode-specific normalisation (Xu et al., NeurIPS 2019, section 4.2), fitted by federated EM.

A numeric column is modelled as a mixture of Gaussians (a variational Bayesian mixture, up to 10 modes, modes
under 0.005 of the weight dropped: SDV's settings). A value is encoded as the one-hot of its most probable mode
and its position within that mode, (x - mu_k) / sigma_k, so a multimodal column becomes a discrete choice plus
a well-behaved unimodal number, which GANs learn more easily. The mixture is fitted by
`hpcsynth.data.mixture.FederatedBGM` (EM statistics summed with one Allreduce per iteration), so every site
holds the same modes. Missing values get the indicator of `NumericTransform`; a missing row is encoded in the
heaviest mode at its centre. Where this differs from SDV, and why: docs/notes/data.md.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hpcsynth.comm import Communicator
from hpcsynth.data.dtypes import restore
from hpcsynth.data.mixture import FederatedBGM
from hpcsynth.data.schema import ColumnSpec, DataError
from hpcsynth.data.transforms import NumericTransform, _softmax_sample

MAX_MODES = 10
WEIGHT_THRESHOLD = 0.005


class ModeSpecificTransform:
    """Mode-specific normalisation of one numeric column, with an optional missingness indicator."""

    def __init__(self, spec: ColumnSpec, max_modes: int = MAX_MODES,
                 weight_threshold: float = WEIGHT_THRESHOLD) -> None:
        self.spec = spec
        self.max_modes = max_modes
        self.weight_threshold = weight_threshold

    # -- fitting (collective) -------------------------------------------------------------------------------
    def fit(self, values: pd.Series, comm: Communicator,
            bounds: tuple[float, float] | None = None) -> ModeSpecificTransform:
        """Range, then the mixture by federated EM (collective); `bounds` is a public range that replaces the
        merged one (values are clipped into it)."""
        x = self._numbers(values)
        counts, extremes = NumericTransform.merged_range(x, comm)
        self._finish_range(counts, extremes if bounds is None else np.array([bounds[0], -bounds[1]]))
        present = np.clip(x[np.isfinite(x)], self.min_, self.max_)
        if self.max_ > self.min_:
            mixture = FederatedBGM(n_components=min(self.max_modes, self.n_)).fit(present, comm)
            keep = mixture.weights_ > self.weight_threshold
            self._set_modes(mixture.means_[keep, 0], np.sqrt(mixture.covariances_[keep, 0]), mixture.weights_[keep])
        else:
            self._set_modes(np.array([self.min_]), np.array([1.0]), np.array([1.0]))
        return self

    _numbers = NumericTransform._numbers

    def _finish_range(self, counts: np.ndarray, extremes: np.ndarray) -> None:
        self.n_, self.n_missing_ = int(counts[0]), int(counts[1])
        if self.n_ == 0:
            raise DataError(f"column {self.spec.name!r}: all values are missing on every site", everywhere=True)
        self.min_, self.max_ = float(extremes[0]), float(-extremes[1])

    def _set_modes(self, means: np.ndarray, stds: np.ndarray, weights: np.ndarray) -> None:
        self.means_, self.stds_ = np.asarray(means, dtype=np.float64), np.asarray(stds, dtype=np.float64)
        self.weights_ = np.asarray(weights, dtype=np.float64) / np.sum(weights)

    # -- encoding -------------------------------------------------------------------------------------------
    @property
    def n_modes(self) -> int:
        return self.means_.size

    @property
    def has_missing(self) -> bool:
        return self.n_missing_ > 0

    @property
    def width(self) -> int:
        return 1 + (self.n_modes if self.n_modes > 1 else 0) + (2 if self.has_missing else 0)

    @property
    def spans(self) -> list[tuple[str, int]]:
        """The within-mode value, the mode (when there are several), then missingness."""
        modes = [("softmax", self.n_modes)] if self.n_modes > 1 else []
        return [("gaussian", 1)] + modes + ([("softmax", 2)] if self.has_missing else [])

    def _log_density(self, x: np.ndarray) -> np.ndarray:
        """log(w_k N(x | mu_k, sigma_k)) for every row and mode, up to a constant."""
        z = (x[:, None] - self.means_) / self.stds_
        return np.log(self.weights_) - np.log(self.stds_) - 0.5 * z * z

    def encode(self, values: pd.Series) -> np.ndarray:
        x = self._numbers(values)
        present = np.isfinite(x)
        heaviest = int(np.argmax(self.weights_))
        filled = np.where(present, np.clip(x, self.min_, self.max_), self.means_[heaviest])
        mode = np.where(present, np.argmax(self._log_density(filled), axis=1), heaviest)
        block = np.zeros((x.size, self.width), dtype=np.float32)
        block[:, 0] = (filled - self.means_[mode]) / self.stds_[mode]
        if self.n_modes > 1:
            block[np.arange(x.size), 1 + mode] = 1.0
        if self.has_missing:
            block[:, -2] = present
            block[:, -1] = ~present
        return block

    def decode(self, block: np.ndarray, rng: np.random.Generator) -> pd.Series:
        """Values from a block whose mode (and missingness) columns are logits: modes are drawn from them; as
        the column's original dtype."""
        mode = _softmax_sample(block[:, 1:1 + self.n_modes], rng) if self.n_modes > 1 else np.zeros(len(block), int)
        x = self.means_[mode] + block[:, 0].astype(np.float64) * self.stds_[mode]
        x = np.clip(x, self.min_, self.max_)
        if self.spec.kind in ("integer", "binary"):
            x = np.round(x)
        if self.has_missing:
            x = np.where(_softmax_sample(block[:, -2:], rng) == 1, np.nan, x)
        return restore(pd.Series(x, name=self.spec.name), self.spec.dtype)

    def state(self) -> dict:
        """Everything needed to rebuild the fitted transform (stored in the run file's /schema)."""
        return {"n": self.n_, "n_missing": self.n_missing_, "min": self.min_, "max": self.max_,
                "means": self.means_.tolist(), "stds": self.stds_.tolist(), "weights": self.weights_.tolist()}

    def load_state(self, state: dict) -> ModeSpecificTransform:
        self._finish_range(np.array([state["n"], state["n_missing"]]), np.array([state["min"], -state["max"]]))
        self._set_modes(np.array(state["means"]), np.array(state["stds"]), np.array(state["weights"]))
        return self
