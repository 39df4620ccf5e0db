"""Reversible column transforms fitted from mergeable statistics, never from pooled rows.

Each transform follows one protocol:
    fit_stats(values) -> local statistics of this site's values (a small numeric array)
    merge(stats, comm) -> the same statistics summed over all sites (one Allreduce)
    finish(merged)     -> the fitted state, identical on every site
    encode(values)     -> float32 block of width `width` for the generator
    decode(block, rng) -> values in the original units and the column's original pandas dtype
Numeric columns fit in two stages (the range, then a histogram on a `GRID_BINS` grid, log-spaced above the
bulk), so the federated fit equals the pooled fit with quantiles exact to 0.12% of the range; missing values
get their own indicator. The grid's derivation: docs/notes/data.md.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from hpcsynth.comm import Communicator
from hpcsynth.data.dtypes import label_text, restore
from hpcsynth.data.private_stats import PRIVATE_GRID_BINS, StatisticsNoise, private_levels, private_range
from hpcsynth.data.schema import ColumnSpec, DataError

GRID_BINS = 4096
_TAIL_SCALE = 100.0
_U_EPS = 1e-6


def _softmax_sample(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one category per row from unnormalised log-probabilities, by inverting each row's cumulative
    distribution with one uniform (one exp per cell: a third of the work of Gumbel-max, and exact)."""
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    cumulative = np.cumsum(weights, axis=1)
    u = rng.random((logits.shape[0], 1)) * cumulative[:, -1:]
    return np.minimum((cumulative <= u).sum(axis=1), logits.shape[1] - 1)


class NumericTransform:
    """Quantile transform to a standard normal and back, with an optional missingness indicator."""

    def __init__(self, spec: ColumnSpec) -> None:
        self.spec = spec

    # -- fitting --------------------------------------------------------------------------------------------
    def fit(self, values: pd.Series, comm: Communicator, noise: StatisticsNoise | None = None,
            bounds: tuple[float, float] | None = None) -> NumericTransform:
        """Range, then the histogram on the grid drawn from it (collective). `bounds` is a public range that
        replaces the merged one; `noise` makes both releases differentially private (`private_stats`)."""
        x = self._numbers(values)
        if noise is None:
            counts, extremes = self.merged_range(x, comm)
            self.finish_range(counts, extremes if bounds is None else np.array([bounds[0], -bounds[1]]))
            self.finish(comm.Allreduce(self.fit_stats(x), "sum"))
        else:
            low, high = bounds if bounds is not None else private_range(x, noise, comm, self.spec.name)
            self.set_range(low, high, PRIVATE_GRID_BINS)
            merged = np.maximum(noise.release(np.append(self.fit_stats(x), (~np.isfinite(x)).sum()), comm), 0.0)
            self.finish_range(np.array([merged[:-1].sum(), merged[-1]]).round(), np.array([low, -high]),
                              PRIVATE_GRID_BINS)
            self.finish(merged[:-1])
        return self

    @classmethod
    def merged_range(cls, x: np.ndarray, comm: Communicator) -> tuple[np.ndarray, np.ndarray]:
        """[present, missing] counts summed and [min, -max] reduced over sites (collective)."""
        return comm.Allreduce(cls.range_stats(x), "sum"), comm.Allreduce(cls.extreme_stats(x), "min")

    def _numbers(self, values: pd.Series) -> np.ndarray:
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)

    @staticmethod
    def range_stats(x: np.ndarray) -> np.ndarray:
        """[count present, count missing]: summed over sites."""
        present = np.isfinite(x)
        return np.array([present.sum(), (~present).sum()], dtype=np.float64)

    @staticmethod
    def extreme_stats(x: np.ndarray) -> np.ndarray:
        """[min, -max]: reduced with MIN over sites (the max as a negated min, so one call serves both)."""
        present = x[np.isfinite(x)]
        if present.size == 0:
            return np.array([np.inf, np.inf])
        return np.array([present.min(), -present.max()])

    def finish_range(self, stats: np.ndarray, extremes: np.ndarray, bins: int = GRID_BINS) -> None:
        self.n_, self.n_missing_ = int(stats[0]), int(stats[1])
        if self.n_ == 0:
            raise DataError(f"column {self.spec.name!r}: all values are missing on every site", everywhere=True)
        self.set_range(float(extremes[0]), float(-extremes[1]), bins)

    def set_range(self, low: float, high: float, bins: int) -> None:
        """The column's range and the grid of `bins` bins in t that the histogram is counted on."""
        self.min_, self.max_ = low, high
        self.scale_ = max((self.max_ - self.min_) / _TAIL_SCALE, 1e-12)
        self.edges_ = np.linspace(0.0, self._t(np.array([self.max_]))[0], bins + 1)

    def _t(self, x: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(x - self.min_, 0.0) / self.scale_)

    def fit_stats(self, x: np.ndarray) -> np.ndarray:
        """This site's histogram on the shared grid."""
        present = x[np.isfinite(x)]
        if self.max_ == self.min_:
            return np.array([present.size], dtype=np.float64)
        counts, _ = np.histogram(self._t(np.clip(present, self.min_, self.max_)), bins=self.edges_)
        return counts.astype(np.float64)

    def finish(self, counts: np.ndarray) -> None:
        """The CDF at the grid edges, made strictly increasing so that it inverts everywhere."""
        cdf = np.concatenate([[0.0], np.cumsum(counts)]) / max(counts.sum(), 1.0)
        ramp = np.linspace(0.0, 1e-9, cdf.size)
        self.cdf_ = (cdf + ramp) / (1.0 + 1e-9)

    # -- encoding -------------------------------------------------------------------------------------------
    @property
    def has_missing(self) -> bool:
        return self.n_missing_ > 0

    @property
    def width(self) -> int:
        return 1 + (2 if self.has_missing else 0)

    @property
    def spans(self) -> list[tuple[str, int]]:
        """How the generator should model the block: a Gaussian value, then a two-way softmax for missingness."""
        return [("gaussian", 1)] + ([("softmax", 2)] if self.has_missing else [])

    def encode(self, values: pd.Series) -> np.ndarray:
        x = self._numbers(values)
        present = np.isfinite(x)
        block = np.zeros((x.size, self.width), dtype=np.float32)
        if self.max_ > self.min_:
            u = np.interp(self._t(np.clip(x[present], self.min_, self.max_)), self.edges_, self.cdf_)
            block[present, 0] = ndtri(np.clip(u, _U_EPS, 1 - _U_EPS))
        if self.has_missing:
            block[:, 1] = present
            block[:, 2] = ~present
        return block

    def decode(self, block: np.ndarray, rng: np.random.Generator) -> pd.Series:
        """Values in the original units, as the column's original dtype."""
        return restore(self._decoded(block, rng), self.spec.dtype)

    def _decoded(self, block: np.ndarray, rng: np.random.Generator) -> pd.Series:
        """Values in the original units as float64 (NaN where missing)."""
        if self.max_ > self.min_:
            t = np.interp(ndtr(block[:, 0].astype(np.float64)), self.cdf_, self.edges_)
            x = np.clip(self.min_ + np.expm1(t) * self.scale_, self.min_, self.max_)
        else:
            x = np.full(block.shape[0], self.min_)
        if self.spec.kind in ("integer", "binary"):
            x = np.round(x)
        if self.has_missing:
            x = np.where(_softmax_sample(block[:, 1:3], rng) == 1, np.nan, x)
        return pd.Series(x, name=self.spec.name)

    def state(self) -> dict:
        """Everything needed to rebuild the fitted transform (stored in the run file's /schema)."""
        return {"n": self.n_, "n_missing": self.n_missing_, "min": self.min_, "max": self.max_,
                "cdf": self.cdf_.tolist() if hasattr(self, "cdf_") else None}

    def load_state(self, state: dict) -> NumericTransform:
        cdf = np.asarray(state["cdf"]) if state["cdf"] is not None else np.zeros(GRID_BINS + 1)
        self.finish_range(np.array([state["n"], state["n_missing"]]), np.array([state["min"], -state["max"]]),
                          cdf.size - 1)
        self.cdf_ = cdf
        return self


class CategoricalTransform:
    """One-hot over the union of every site's levels; missing values are a level of their own.

    The level sets are exchanged with `allgather` (labels only, a few words per column), then counted on the
    shared order with one Allreduce. Rare levels are kept: a level seen once at one site is still a level.
    """

    MISSING = "__missing__"

    def __init__(self, spec: ColumnSpec) -> None:
        self.spec = spec

    def fit(self, values: pd.Series, comm: Communicator, noise: StatisticsNoise | None = None,
            levels: list | None = None) -> CategoricalTransform:
        """The shared level set, then the counts on it (collective). `levels` is a public level set that
        replaces the exchanged one; `noise` makes the exchange differentially private (`private_stats`)."""
        self.numeric_ = all(comm.allgather(_numeric_labels(values)))
        if levels is not None:
            union = {float(v) for v in levels} if self.numeric_ else {label_text(v) for v in levels}
        elif noise is None:
            union = set().union(*comm.allgather(self.local_levels(values)))
        elif self.spec.kind == "binary":  # 0 and 1 by definition of the kind: public, nothing to select
            if not self.numeric_:
                raise DataError(f"column {self.spec.name!r}: a binary column of text labels needs its two levels "
                                f"declared in data.levels with a privacy budget", everywhere=True)
            union = {0.0, 1.0}
        else:
            union = private_levels(self.local_counts(values), noise, comm)
        self.labels_ = sorted(union, key=lambda v: (isinstance(v, str), v))
        if noise is not None and not self.labels_:
            raise DataError(f"column {self.spec.name!r}: no level is frequent enough to release privately at this "
                            f"budget; declare its levels in data.levels", everywhere=True)
        if noise is None:
            self.finish(comm.Allreduce(self.fit_stats(values), "sum"))
        else:  # levels no site released are coded as missing, so a private fit always keeps that code
            self.finish(np.maximum(noise.release(self.fit_stats(values), comm), 0.0))
            self.has_missing_ = self.has_missing_ or (levels is None and self.spec.kind == "categorical")
        return self

    def local_counts(self, values: pd.Series) -> dict:
        """This site's count of each of its own levels (labels as `local_levels` gives them)."""
        return self._keys(values).dropna().value_counts().to_dict()

    def local_levels(self, values: pd.Series) -> set:
        """This site's levels, as numbers when every site's are numbers, else as text (so that 2, 2.0 and "2"
        from three sites are one level)."""
        return set(self._keys(values).dropna().unique())

    def _keys(self, values: pd.Series) -> pd.Series:
        """Values as labels: floats when the column's labels are numbers, else text (NaN where missing)."""
        if self.numeric_:
            return pd.to_numeric(values, errors="coerce").astype(np.float64)
        return _text_labels(values)

    def codes(self, values: pd.Series) -> np.ndarray:
        """Codes on the shared label order; missing (and levels unseen at fit time) map to the last code.

        Vectorised (a sorted search for numbers, pandas' categorical coding for text): a million rows take
        milliseconds, not the seconds of a per-value lookup."""
        missing = len(self.labels_)
        if self.numeric_:
            x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            labels = np.asarray(self.labels_, dtype=np.float64)
            idx = np.minimum(np.searchsorted(labels, x), max(missing - 1, 0))
            found = np.isfinite(x) & (labels[idx] == x) if missing else np.zeros(x.size, dtype=bool)
            return np.where(found, idx, missing).astype(np.int64)
        codes = pd.Categorical(_text_labels(values), categories=self.labels_).codes.astype(np.int64)
        return np.where(codes < 0, missing, codes)

    def fit_stats(self, values: pd.Series) -> np.ndarray:
        """Counts of each shared level, then of missing values, at this site."""
        return np.bincount(self.codes(values), minlength=len(self.labels_) + 1).astype(np.float64)

    def finish(self, counts: np.ndarray) -> None:
        self.counts_ = counts
        self.has_missing_ = bool(counts[-1] > 0)

    @property
    def width(self) -> int:
        return len(self.labels_) + int(self.has_missing_)

    @property
    def spans(self) -> list[tuple[str, int]]:
        return [("softmax", self.width)]

    def encode(self, values: pd.Series) -> np.ndarray:
        block = np.zeros((len(values), self.width), dtype=np.float32)
        codes = np.minimum(self.codes(values), self.width - 1)
        block[np.arange(len(values)), codes] = 1.0
        return block

    def decode(self, block: np.ndarray, rng: np.random.Generator) -> pd.Series:
        codes = _softmax_sample(block, rng)
        return self.from_codes(codes)

    def from_codes(self, codes: np.ndarray) -> pd.Series:
        """Values for codes, as the column's original dtype; the code past the last label means missing."""
        labels = np.array(self.labels_ + [np.nan], dtype=float if self.numeric_ else object)
        out = labels[codes]
        if not self.numeric_:
            out = np.where(codes == len(self.labels_), None, out)
        return restore(pd.Series(out, name=self.spec.name), self.spec.dtype, self.labels_)

    def state(self) -> dict:
        return {"labels": list(self.labels_), "numeric": self.numeric_, "counts": self.counts_.tolist()}

    def load_state(self, state: dict) -> CategoricalTransform:
        self.labels_, self.numeric_ = list(state["labels"]), bool(state["numeric"])
        self.finish(np.asarray(state["counts"], dtype=np.float64))
        return self


class DatetimeTransform(NumericTransform):
    """Dates and times through the quantile map as days since 1970-01-01, decoded back to timestamps."""

    _DAY = np.timedelta64(1, "D")

    def _numbers(self, values: pd.Series) -> np.ndarray:
        stamps = pd.to_datetime(values, errors="coerce").to_numpy(dtype="datetime64[ns]")
        days = (stamps - np.datetime64("1970-01-01", "ns")) / self._DAY
        return np.where(np.isnat(stamps), np.nan, days)

    def _decoded(self, block: np.ndarray, rng: np.random.Generator) -> pd.Series:
        """Naive timestamps (UTC), to the second."""
        return days_to_stamps(super()._decoded(block, rng).to_numpy(), self.spec.name)


def days_to_stamps(days: np.ndarray, name: str | None = None) -> pd.Series:
    """Days since 1970-01-01 (NaN = missing) as naive UTC timestamps, rounded to the second."""
    return pd.Series(pd.to_datetime(np.round(days * 86400.0), unit="s", errors="coerce"), name=name)


def _numeric_labels(values: pd.Series) -> bool:
    """Whether this site's levels are numbers (or it has none); booleans count as numbers 0 and 1."""
    present = values.dropna()
    return present.empty or pd.api.types.is_numeric_dtype(present)


def _text_labels(values: pd.Series) -> pd.Series:
    """Values as text labels (NaN where missing); a whole float prints as an integer, as in `label_text`.

    Text columns convert in one vectorised step; only columns holding numbers go value by value."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    present = values.dropna()
    if pd.api.types.is_float_dtype(present) or pd.api.types.infer_dtype(present, skipna=True) != "string":
        text = present.map(label_text)
    else:
        text = present.astype(str)
    return text.reindex(values.index)


def transform_for(spec: ColumnSpec) -> NumericTransform | CategoricalTransform:
    """Categoricals and binaries are one-hot; integers, continuous values and dates go through the quantile map."""
    if spec.kind in ("categorical", "binary"):
        return CategoricalTransform(spec)
    if spec.kind == "datetime":
        return DatetimeTransform(spec)
    return NumericTransform(spec)
