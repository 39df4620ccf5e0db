"""Exact k-nearest neighbours under the Gower distance, for mixed clinical tables stored as codes.

Numeric columns count ``|x - y| / range``, categorical ones (integer codes, no one-hot expansion) 0 or 1;
missing values (NaN, or a negative code) drop out and the remaining weights are renormalised (the definition
is in :func:`knn_gower_cpu`). Everything is computed in float64, so the result is exact with ties broken by the
lower index. The kernel streams reference tiles past blocks of query rows (parallel over query blocks), so
memory stays ``O((N + M) D)``. CUDA arrays run :mod:`hpcsynth.kernels.gower_cuda`, which evaluates the same
expression in the same column order and returns the same distances and indices; both validate the options with
:func:`gower_columns`.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numba import njit, prange

from .topk import insert

QUERY_BLOCK = 16
REFERENCE_TILE = 512


def gower_columns(d: int, categorical: Sequence[int] | np.ndarray | None, ranges: Sequence[float] | np.ndarray | None,
                  weights: Sequence[float] | np.ndarray | None, data_span: Callable[[], np.ndarray]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate the per-column options of ``d`` columns; return ``(is_categorical, inverse_range, weights)``.

    ``data_span()`` gives the default ranges (max - min of the non-missing values over query and reference,
    0 for a column with none); it is called only when ``ranges`` is None. The CPU path computes it with numpy
    (:func:`host_span`), the CUDA path on the device, so that both share this one validation.
    """
    is_cat = np.zeros(d, np.bool_)
    if categorical is not None:
        cat = np.asarray(categorical)
        if cat.dtype == np.bool_:
            if cat.shape != (d,):
                raise ValueError(f"a boolean categorical mask needs {d} entries, got shape {cat.shape}")
            is_cat = cat.copy()
        else:
            if cat.ndim != 1 or cat.dtype.kind not in "iu" or (cat.size and (cat.min() < 0 or cat.max() >= d)):
                raise ValueError(f"categorical must be column indices in [0, {d}) or a boolean mask")
            is_cat[cat] = True
    if weights is None:
        w = np.ones(d)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (d,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() == 0:
            raise ValueError(f"weights must be {d} finite non-negative numbers, not all zero")
    if ranges is None:
        span = np.asarray(data_span(), dtype=np.float64)
    else:
        span = np.asarray(ranges, dtype=np.float64)
        if span.shape != (d,) or not np.isfinite(span[~is_cat]).all() or (span[~is_cat] < 0).any():
            raise ValueError(f"ranges must hold {d} entries, finite and non-negative for numeric columns")
    inv_range = np.zeros(d)
    positive = (~is_cat) & (span > 0)
    inv_range[positive] = 1.0 / span[positive]
    return is_cat, inv_range, w


def host_span(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per column, max - min of the non-missing values of both matrices (0 where a column has none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column has no range: 0 below
        high = np.fmax(np.nanmax(query, axis=0), np.nanmax(reference, axis=0))
        low = np.fmin(np.nanmin(query, axis=0), np.nanmin(reference, axis=0))
    return np.nan_to_num(high - low, nan=0.0)


@njit(nogil=True, cache=True)
def _gower(q, r, i, j, is_cat, inv_range, w):
    num = 0.0
    den = 0.0
    for c in range(q.shape[1]):
        x = q[i, c]
        y = r[j, c]
        if np.isnan(x) or np.isnan(y):
            continue
        if is_cat[c]:
            if x < 0 or y < 0:
                continue
            s = 0.0 if x == y else 1.0
        else:
            s = abs(x - y) * inv_range[c]
        num += w[c] * s
        den += w[c]
    return num / den if den > 0 else 1.0


@njit(parallel=True, cache=True)
def _gower_knn(q, r, is_cat, inv_range, w, k, exclude_self, out_d, out_i):
    n = q.shape[0]
    m = r.shape[0]
    n_blocks = (n + QUERY_BLOCK - 1) // QUERY_BLOCK
    for b in prange(n_blocks):
        i0 = b * QUERY_BLOCK
        i1 = min(i0 + QUERY_BLOCK, n)
        best_d = np.full((i1 - i0, k), np.inf)
        best_i = np.full((i1 - i0, k), np.iinfo(np.int64).max)
        for j0 in range(0, m, REFERENCE_TILE):
            for i in range(i0, i1):
                for j in range(j0, min(j0 + REFERENCE_TILE, m)):
                    if not (exclude_self and i == j):
                        insert(best_d[i - i0], best_i[i - i0], _gower(q, r, i, j, is_cat, inv_range, w), j)
        for i in range(i0, i1):
            for c in range(k):
                out_d[i, c] = np.float32(best_d[i - i0, c])
                out_i[i, c] = best_i[i - i0, c]


def knn_gower_cpu(query: np.ndarray, reference: np.ndarray, k: int, exclude_self: bool,
                  categorical: Any = None, ranges: Any = None, weights: Any = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Exact Gower k-NN of two validated float matrices (NaN allowed as missing).

    Definition (Gower 1971, with per-column weights). For rows ``x`` and ``y`` over columns ``c``::

        s_c = |x_c - y_c| / range_c     numeric column   (0 when range_c == 0)
        s_c = 0 if x_c == y_c else 1    categorical column (integer codes)
        d(x, y) = sum_c w_c delta_c s_c / sum_c w_c delta_c

    ``delta_c`` is 0 when either value is missing (NaN anywhere, or a negative code in a categorical column,
    the pandas ``.cat.codes`` convention) and 1 otherwise. A pair with no comparable column gets distance 1,
    the largest possible, so it ranks last instead of poisoning the ordering with NaN. ``range_c`` defaults to
    max - min over query and reference together (non-missing values), which keeps every ``s_c`` in [0, 1];
    pass ``ranges`` explicitly to compare several runs on one scale (e.g. the real data's ranges for every
    synthetic table)."""
    q = np.ascontiguousarray(query, dtype=np.float64)
    r = q if reference is query else np.ascontiguousarray(reference, dtype=np.float64)
    is_cat, inv_range, w = gower_columns(q.shape[1], categorical, ranges, weights, lambda: host_span(q, r))
    out_d = np.empty((q.shape[0], k), np.float32)
    out_i = np.empty((q.shape[0], k), np.int64)
    _gower_knn(q, r, is_cat, inv_range, w, k, exclude_self, out_d, out_i)
    return out_d, out_i
