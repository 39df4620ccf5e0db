"""Histograms and two-way contingency tables of coded columns (the fidelity metrics' marginals), CPU and CUDA.

``histogram(codes, n_bins)`` counts each code in ``[0, n_bins)``; ``contingency(a, b, n_a, n_b)`` counts
each pair. Negative codes mean missing (as in :mod:`hpcsynth.kernels.gower`) and are not counted (a pair
with either code missing is left out); a code at or above its number of bins is an error. numpy input runs
here: the rows are cut into one contiguous range per thread, each thread counts into its own row of
private counts (padded to whole cache lines, so threads never write the same line), and the rows are
summed. CUDA arrays run :mod:`hpcsynth.kernels.counts_cuda` (shared-memory atomics) and return device
arrays. A one-way histogram is the two-way kernel with one column of bins, so both share one code path.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numba import get_num_threads, njit, prange

from .api import _is_cuda

_LINE = 8  # int64 counters per 64-byte cache line


@njit(parallel=True, cache=True)
def _count_cpu(a, b, n_a, n_b, two_way, n_tasks):
    """Counts of ``a * n_b + b`` (or of ``a`` when not ``two_way``); the last cell counts out-of-range codes."""
    n = a.shape[0]
    cells = n_a * n_b
    width = (cells + 1 + _LINE - 1) // _LINE * _LINE
    private = np.zeros((n_tasks, width), np.int64)
    per = (n + n_tasks - 1) // n_tasks
    for t in prange(n_tasks):
        row = private[t]
        for i in range(t * per, min(n, (t + 1) * per)):
            ca = np.int64(a[i])
            cb = np.int64(b[i]) if two_way else np.int64(0)
            if ca >= 0 and cb >= 0:
                row[ca * n_b + cb if ca < n_a and cb < n_b else cells] += 1
    total = np.zeros(cells + 1, np.int64)
    for c in prange(cells + 1):
        for t in range(n_tasks):
            total[c] += private[t, c]
    return total


def _check_bins(n: Any, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


def _host_codes(x: Any, name: str) -> np.ndarray:
    a = np.ascontiguousarray(x)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a 1-D array of integer codes, got {a.dtype} {a.shape}")
    return a


def _out_of_range(bad: int, what: str) -> None:
    if bad:
        raise ValueError(f"{bad} codes are at or above {what} (codes run from 0; negative means missing)")


def histogram(codes: Any, n_bins: int) -> Any:
    """``counts[c]`` = number of entries equal to ``c``, for ``c`` in ``[0, n_bins)`` (int64; negative codes
    are missing and not counted; a code ``>= n_bins`` raises ValueError). Equals
    ``np.bincount(codes[codes >= 0], minlength=n_bins)``."""
    n_bins = _check_bins(n_bins, "n_bins")
    if _is_cuda(codes):
        from .counts_cuda import count_cuda

        counts, bad = count_cuda(codes, None, n_bins, 1)
        _out_of_range(bad, f"n_bins={n_bins}")
        return counts
    a = _host_codes(codes, "codes")
    total = _count_cpu(a, a, n_bins, 1, False, get_num_threads())
    _out_of_range(int(total[-1]), f"n_bins={n_bins}")
    return total[:-1]


def contingency(a: Any, b: Any, n_a: int, n_b: int) -> Any:
    """``counts[i, j]`` = number of rows with ``a == i`` and ``b == j`` (int64, shape ``(n_a, n_b)``); rows
    with a negative (missing) code in either column are not counted; a code at or above its number of bins
    raises ValueError. Equals ``np.add.at(counts, (a, b), 1)`` over the complete rows."""
    n_a, n_b = _check_bins(n_a, "n_a"), _check_bins(n_b, "n_b")
    if _is_cuda(a) or _is_cuda(b):
        if not (_is_cuda(a) and _is_cuda(b)):
            raise ValueError("a and b must both be CUDA arrays or both host arrays")
        from .counts_cuda import count_cuda

        counts, bad = count_cuda(a, b, n_a, n_b)
        _out_of_range(bad, f"n_a={n_a} or n_b={n_b}")
        return counts.reshape(n_a, n_b)
    ca, cb = _host_codes(a, "a"), _host_codes(b, "b")
    if ca.shape != cb.shape:
        raise ValueError(f"a and b must have the same length, got {ca.shape[0]} and {cb.shape[0]}")
    total = _count_cpu(ca, cb, n_a, n_b, True, get_num_threads())
    _out_of_range(int(total[-1]), f"n_a={n_a} or n_b={n_b}")
    return total[:-1].reshape(n_a, n_b)
