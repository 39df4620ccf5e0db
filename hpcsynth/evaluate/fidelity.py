"""Column-shape fidelity of synthetic tables against the consortium's pooled held-out rows, from merged counts.

The score of a column is SDMetrics' shape score: 1 - KS statistic for numeric columns, 1 - total variation
distance for categorical ones (missing counted as a level); their mean over columns is `column_shapes`.

The held-out rows never move. Synthetic rows may (they are the product), so every site holds every synthetic
table. The two-sample KS statistic against the pooled held-out rows is then exact from counts: between two
neighbouring synthetic values the synthetic CDF is flat and the real CDF rises, so the supremum of
|F_syn - F_real| is reached at a synthetic value s, either at s itself or just before it. Each site counts its
held-out values `< s` and `<= s` for every synthetic value s, one Allreduce sums them, and the statistic follows
exactly, as if the held-out rows had been pooled. Category counts are summed the same way.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hpcsynth.comm import Communicator
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform


def _present(values: pd.Series) -> np.ndarray:
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.sort(x[np.isfinite(x)])


def ks_counts(real: np.ndarray, points: np.ndarray) -> np.ndarray:
    """[count present, counts < each point, counts <= each point] of sorted real values: summable over sites."""
    less = np.searchsorted(real, points, side="left")
    leq = np.searchsorted(real, points, side="right")
    return np.concatenate([[real.size], less, leq]).astype(np.float64)


def ks_from_counts(synthetic: np.ndarray, counts: np.ndarray) -> float:
    """The exact two-sample KS statistic from the sorted synthetic values and merged real counts."""
    n_real, m = counts[0], synthetic.size
    if n_real == 0 or m == 0:
        return float(n_real != m)
    k = synthetic.size
    real_less, real_leq = counts[1:1 + k] / n_real, counts[1 + k:] / n_real
    syn_less = np.searchsorted(synthetic, synthetic, side="left") / m
    syn_leq = np.searchsorted(synthetic, synthetic, side="right") / m
    return float(max(np.abs(syn_less - real_less).max(), np.abs(syn_leq - real_leq).max()))


def tv_from_counts(synthetic_counts: np.ndarray, real_counts: np.ndarray) -> float:
    """Total variation distance between two count vectors over the same levels."""
    p = synthetic_counts / max(synthetic_counts.sum(), 1.0)
    q = real_counts / max(real_counts.sum(), 1.0)
    return float(0.5 * np.abs(p - q).sum())


def column_scores(synthetic: pd.DataFrame, holdout: pd.DataFrame, transformer: TableTransformer,
                  comm: Communicator) -> dict[str, float]:
    """Shape score of each column of one synthetic table against the pooled held-out rows (collective: every
    column's counts in one Allreduce, so a score costs one collective however many columns the table has)."""
    local, sizes, synthetic_side = [], [], []
    for t in transformer.transforms_:
        name = t.spec.name
        if isinstance(t, CategoricalTransform):
            local.append(np.asarray(t.fit_stats(holdout[name]), dtype=np.float64))
            synthetic_side.append(t.fit_stats(synthetic[name]))
        else:
            points = _present(synthetic[name])
            local.append(ks_counts(_present(holdout[name]), points))
            synthetic_side.append(points)
        sizes.append(local[-1].size)
    merged = comm.Allreduce(np.concatenate(local) if local else np.empty(0), "sum")
    scores, start = {}, 0
    for t, size, mine in zip(transformer.transforms_, sizes, synthetic_side):
        real, start = merged[start:start + size], start + size
        if isinstance(t, CategoricalTransform):
            scores[t.spec.name] = 1.0 - tv_from_counts(mine, real)
        else:
            scores[t.spec.name] = 1.0 - ks_from_counts(mine, real)
    return scores


def wasserstein(synthetic: pd.DataFrame, holdout: pd.DataFrame, transformer: TableTransformer) -> float:
    """Mean over numeric columns of the 1-Wasserstein distance divided by the column's shared range (this site's
    held-out rows; site-weighted across sites)."""
    from scipy.stats import wasserstein_distance

    out = []
    for t in transformer.transforms_:
        if isinstance(t, CategoricalTransform):
            continue
        a = pd.to_numeric(synthetic[t.spec.name], errors="coerce").dropna().to_numpy(dtype=np.float64)
        b = pd.to_numeric(holdout[t.spec.name], errors="coerce").dropna().to_numpy(dtype=np.float64)
        if a.size and b.size:
            out.append(wasserstein_distance(a, b) / max(t.max_ - t.min_, 1e-12))
    return float(np.mean(out)) if out else float("nan")
