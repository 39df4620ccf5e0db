"""Pair trends: does the synthetic table keep how columns move together? (SDMetrics' Quality Report).

Every pair of columns is scored as SDMetrics' `ColumnPairTrends` does: two numeric columns by correlation
similarity, 1 - |r_real - r_syn| / 2; any other pair by contingency similarity, 1 - total variation distance of
the joint tables (numbers in 10 equal-width bins). Every pair counts unless `min_correlation` /
`min_association` say otherwise (then it equals SDMetrics' default). Both parts are exact from summable
statistics, so the held-out rows never leave their site. Details: docs/notes/evaluate.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from hpcsynth.comm import Communicator
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform
from hpcsynth.evaluate.pooling import summed

N_BINS = 10


@dataclass
class PairTrends:
    """Pair trend scores and the correlation matrices the report draws.

    Parameters
    ----------
    scores : dict of (str, str) to float
        The score of every pair of columns.
    counted : dict of (str, str) to bool
        Whether the pair counts towards `score` (its real association passes the thresholds).
    columns : list of str
        The numeric-valued columns of the correlation matrices.
    real_corr, synthetic_corr : ndarray
        Pearson correlation matrices of those columns.
    """

    scores: dict[tuple[str, str], float]
    counted: dict[tuple[str, str], bool]
    columns: list[str]
    real_corr: np.ndarray
    synthetic_corr: np.ndarray

    @property
    def score(self) -> float:
        values = [v for p, v in self.scores.items() if self.counted[p] and np.isfinite(v)]
        return float(np.mean(values)) if values else float("nan")


def _numbers(frame: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def numeric_valued(transformer: TableTransformer) -> list[str]:
    """Columns with numbers for values: numeric ones and categories whose levels are numbers (0/1 flags)."""
    return [t.spec.name for t in transformer.transforms_
            if not isinstance(t, CategoricalTransform) or getattr(t, "numeric_", False)]


def moments(frame: pd.DataFrame, columns: list[str], centre: np.ndarray) -> np.ndarray:
    """(pairs, 6) pairwise-complete sums n, Sx, Sy, Sxx, Syy, Sxy of every pair (i < j): summable over sites."""
    x = np.column_stack([_numbers(frame, c) for c in columns]) - centre if columns else np.empty((len(frame), 0))
    present = np.isfinite(x).astype(np.float64)
    z = np.nan_to_num(x)
    rows = []
    for i, j in combinations(range(len(columns)), 2):
        both = present[:, i] * present[:, j]
        xi, xj = z[:, i] * both, z[:, j] * both
        rows.append([both.sum(), xi.sum(), xj.sum(), (xi * xi).sum(), (xj * xj).sum(), (xi * xj).sum()])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def pearson_from_moments(m: np.ndarray) -> np.ndarray:
    n, sx, sy, sxx, syy, sxy = m.T
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = n * sxy - sx * sy
        var = (n * sxx - sx * sx) * (n * syy - sy * sy)
        r = cov / np.sqrt(var)
    return np.where((n > 1) & (var > 0), np.clip(r, -1.0, 1.0), np.nan)


def _matrix(columns: list[str], values: np.ndarray) -> np.ndarray:
    out = np.eye(len(columns))
    for (i, j), v in zip(combinations(range(len(columns)), 2), values):
        out[i, j] = out[j, i] = v
    return out


def bin_edges(low: float, high: float) -> np.ndarray:
    """`np.histogram_bin_edges(x)` (10 bins) from the range alone, so the pooled range gives the pooled edges."""
    if not (np.isfinite(low) and np.isfinite(high)):
        low, high = 0.0, 1.0
    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, N_BINS + 1)


def _codes(frame: pd.DataFrame, transformer: TableTransformer, edges: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every column as small integer codes: category codes (missing last) or the SDMetrics bin of a number."""
    codes = {}
    for t in transformer.transforms_:
        name = t.spec.name
        if isinstance(t, CategoricalTransform):
            codes[name] = t.codes(frame[name])
        else:
            codes[name] = np.digitize(_numbers(frame, name), edges[name]).astype(np.int64)
    return codes


def _levels(transformer: TableTransformer) -> dict[str, int]:
    return {t.spec.name: len(t.labels_) + 1 if isinstance(t, CategoricalTransform) else N_BINS + 2
            for t in transformer.transforms_}


def joint_counts(codes: dict[str, np.ndarray], levels: dict[str, int], pairs: list[tuple[str, str]]) -> np.ndarray:
    """The concatenated joint count tables of the pairs: summable over sites."""
    parts = [np.bincount(codes[a] * levels[b] + codes[b], minlength=levels[a] * levels[b]) for a, b in pairs]
    return np.concatenate(parts).astype(np.float64) if parts else np.empty(0)


def _ranges(frame: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    low, high = [], []
    for name in names:
        x = _numbers(frame, name)
        x = x[np.isfinite(x)]
        low.append(x.min() if x.size else np.inf)
        high.append(x.max() if x.size else -np.inf)
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


def cramers_v(joint: np.ndarray) -> float:
    """Cramer's V of a real joint table (levels never seen dropped, as SDMetrics' `unstack` does)."""
    from scipy.stats.contingency import association

    table = joint[joint.sum(axis=1) > 0][:, joint.sum(axis=0) > 0]
    return float(association(table.astype(np.int64), method="cramer")) if min(table.shape) >= 2 else float("nan")


@dataclass(frozen=True)
class RealPairs:
    """What pair trends read of the pooled held-out rows: the same for every synthetic table, so a judge computes
    it once (`pooled_real_pairs`).

    Parameters
    ----------
    r : ndarray
        Pearson's r of every pair of number-valued columns, from summed moments.
    edges : dict of str to ndarray
        The bin edges of every numeric column, from the pooled range.
    joint : ndarray
        The concatenated joint counts of the pairs with a category or a binned number, summed over sites.
    """

    r: np.ndarray
    edges: dict[str, np.ndarray]
    joint: np.ndarray


def _discrete_pairs(transformer: TableTransformer) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(numeric columns, number-valued columns, pairs scored from joint counts)."""
    numeric = [t.spec.name for t in transformer.transforms_ if not isinstance(t, CategoricalTransform)]
    pairs = list(combinations(transformer.columns, 2))
    return numeric, numeric_valued(transformer), [p for p in pairs if not (p[0] in numeric and p[1] in numeric)]


def _centre(transformer: TableTransformer, valued: list[str]) -> np.ndarray:
    return np.array([getattr(transformer.transform_of(c), "min_", 0.0) for c in valued], dtype=np.float64)


def pooled_real_pairs(holdout: pd.DataFrame, transformer: TableTransformer, comm: Communicator) -> RealPairs:
    """The pooled held-out rows' correlations, bin edges and joint counts, exact from sums over sites
    (collective)."""
    numeric, valued, discrete = _discrete_pairs(transformer)
    real_r = pearson_from_moments(summed(moments(holdout, valued, _centre(transformer, valued)), comm))
    low, high = _ranges(holdout, numeric)
    low, high = comm.Allreduce(low, "min"), comm.Allreduce(high, "max")
    edges = {c: bin_edges(lo, hi) for c, lo, hi in zip(numeric, low, high)}
    joint = summed(joint_counts(_codes(holdout, transformer, edges), _levels(transformer), discrete), comm)
    return RealPairs(real_r, edges, joint)


def pair_trends(synthetic: pd.DataFrame, holdout: pd.DataFrame, transformer: TableTransformer,
                comm: Communicator, min_correlation: float = 0.0, min_association: float = 0.0,
                real: RealPairs | None = None) -> PairTrends:
    """SDMetrics' column pair trends of one synthetic table against the pooled held-out rows (collective unless
    `real`, the result of `pooled_real_pairs` for these rows, is given: it does not change from one synthetic
    table to the next).

    A pair counts in the mean when the real |r| exceeds `min_correlation` (numeric pairs) or the real
    Cramer's V exceeds `min_association` (other pairs); a threshold of 0 counts every pair."""
    numeric, valued, discrete = _discrete_pairs(transformer)
    real = real if real is not None else pooled_real_pairs(holdout, transformer, comm)
    real_r, real_joint = real.r, real.joint
    syn_r = pearson_from_moments(moments(synthetic, valued, _centre(transformer, valued)))
    syn_edges = {c: bin_edges(lo, hi) for c, lo, hi in zip(numeric, *_ranges(synthetic, numeric))}
    levels = _levels(transformer)
    pairs = list(combinations(transformer.columns, 2))
    syn_joint = joint_counts(_codes(synthetic, transformer, syn_edges), levels, discrete)

    scores, counted, start = {}, {}, 0
    for a, b in discrete:
        size = levels[a] * levels[b]
        r, s = real_joint[start:start + size], syn_joint[start:start + size]
        start += size
        scores[(a, b)] = 1.0 - 0.5 * float(np.abs(r / max(r.sum(), 1) - s / max(s.sum(), 1)).sum())
        counted[(a, b)] = min_association <= 0 or cramers_v(r.reshape(levels[a], levels[b])) > min_association
    index = {pair: k for k, pair in enumerate(combinations(valued, 2))}
    for a, b in pairs:
        if a in numeric and b in numeric:
            k = index[(a, b)]
            scores[(a, b)] = 1.0 - abs(real_r[k] - syn_r[k]) / 2.0
            counted[(a, b)] = min_correlation <= 0 or bool(abs(real_r[k]) > min_correlation)
    return PairTrends({p: scores[p] for p in pairs}, {p: counted[p] for p in pairs}, valued,
                      _matrix(valued, real_r), _matrix(valued, syn_r))
