"""Exact Gower k-nearest neighbours on a CUDA device: the same arithmetic as :mod:`hpcsynth.kernels.gower`, so
the GPU returns the CPU's distances and indices bit for bit.

``_column_stats_kernel`` finds the default column ranges on the device; ``_gower_topk_kernel`` streams tiles
of reference rows past one thread per query row and keeps a sorted top-k by ``(distance, index)`` (memory
``O((N + M) D + N k)``); ``_merge_kernel`` merges the per-chunk lists. Each pair's distance is the CPU's
float64 expression, column by column in the same order, with NVVM's fused multiply-adds kept from moving the
last bit (see :func:`_gower_topk_kernel`). The kernels call no device functions (not even ``min``, whose CUDA
overload is one), so ``compile_ptx`` builds them without a GPU: the tests compile them for Hopper (cc 9.0).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda, float32, float64

from .gower import gower_columns
from .knn_cuda import _as_device_array, _blocks, _n_split
from .validation import check_device_dtype, check_shapes, infinite_error

TPB = 128  # threads per block (the simulator tests use fewer: each simulated thread is a Python thread)
SMEM_DOUBLES = 4096  # 32 KiB of static shared memory per block for the reference tile
STATS_ROWS = 256  # rows each thread of the column-statistics kernel reduces before its atomics
_NO_INDEX = np.iinfo(np.int64).max


@cuda.jit
def _column_stats_kernel(x, low, high, bad):
    """Fold ``STATS_ROWS`` rows of one column into ``low``/``high`` (NaN skipped); set ``bad[0]`` on +-inf.
    Float64 atomics, one per thread and column: the default ranges without copying data to the host (the
    per-column options are then validated on the host by :func:`hpcsynth.kernels.gower.gower_columns`)."""
    t = cuda.grid(1)
    n, d = x.shape
    c = t % d
    start = (t // d) * STATS_ROWS
    if start >= n:
        return
    stop = start + STATS_ROWS if start + STATS_ROWS < n else n
    lo = math.inf
    hi = -math.inf
    for i in range(start, stop):
        v = float64(x[i, c])
        if math.isinf(v):
            bad[0] = 1
        elif v == v:
            if v < lo:
                lo = v
            if v > hi:
                hi = v
    if lo <= hi:
        cuda.atomic.min(low, c, lo)
        cuda.atomic.max(high, c, hi)


@cuda.jit
def _transpose_f64_kernel(x, out):
    """``out[c, i] = float64(x[i, c])``: threads of a warp then read consecutive query rows (coalesced)."""
    i, c = cuda.grid(2)
    if i < x.shape[0] and c < x.shape[1]:
        out[c, i] = float64(x[i, c])


@cuda.jit
def _gower_topk_kernel(q_t, r, is_cat, inv_range, w, exclude_self, tile_rows, best_d, best_i):
    """Per query row and reference chunk, the k smallest Gower distances (float64, sorted) and their indices.

    One thread per query row (read from a transposed float64 copy, so a warp's loads coalesce); each block
    stages a tile of reference rows in shared memory (``SMEM_DOUBLES`` float64 values) and every thread streams
    the tile against its row. The reference may be cut into ``n_split`` chunks (grid dimension y) so that a few
    queries still fill the device. NVVM contracts ``num + w * s`` into a fused multiply-add by default (Numba
    offers no switch), which rounds once instead of twice and would move the last bit; writing the product as
    ``w * s + 0.0`` keeps the rounded product (``fma(w, s, +0) == w * s`` for these non-negative terms) and
    leaves a plain add for the sum. The PTX test checks that every float64 FMA left in the kernel adds zero."""
    tile = cuda.shared.array(SMEM_DOUBLES, float64)
    d = q_t.shape[0]
    n = q_t.shape[1]
    m = r.shape[0]
    n_split = best_d.shape[0]
    k_last = best_d.shape[2] - 1
    s = cuda.blockIdx.y
    tid = cuda.threadIdx.x
    i = cuda.blockIdx.x * cuda.blockDim.x + tid
    if i < n:
        for p in range(k_last + 1):
            best_d[s, i, p] = math.inf
            best_i[s, i, p] = _NO_INDEX
    chunk = (m + n_split - 1) // n_split
    start = s * chunk
    stop = start + chunk if start + chunk < m else m
    thr_d = math.inf
    thr_i = _NO_INDEX
    for j0 in range(start, stop, tile_rows):
        rows = tile_rows if j0 + tile_rows < stop else stop - j0
        cuda.syncthreads()
        for e in range(tid, rows * d, cuda.blockDim.x):
            tile[e] = float64(r[j0 + e // d, e % d])
        cuda.syncthreads()
        if i < n:
            for t in range(rows):
                j = j0 + t
                if exclude_self and j == i:
                    continue
                num = 0.0
                den = 0.0
                for c in range(d):
                    x = q_t[c, i]
                    y = tile[t * d + c]
                    if math.isnan(x) or math.isnan(y):
                        continue
                    if is_cat[c]:
                        if x < 0 or y < 0:
                            continue
                        sc = 0.0 if x == y else 1.0
                    else:
                        sc = (x - y if x >= y else y - x) * inv_range[c]
                    num += w[c] * sc + 0.0  # "+ 0.0": no FMA contraction with the sum (module docstring)
                    den += w[c]
                dist = num / den if den > 0 else 1.0
                if not (dist > thr_d or (dist == thr_d and j >= thr_i)):
                    p = k_last
                    while p > 0 and (best_d[s, i, p - 1] > dist or (best_d[s, i, p - 1] == dist
                                                                     and best_i[s, i, p - 1] > j)):
                        best_d[s, i, p] = best_d[s, i, p - 1]
                        best_i[s, i, p] = best_i[s, i, p - 1]
                        p -= 1
                    best_d[s, i, p] = dist
                    best_i[s, i, p] = j
                    thr_d = best_d[s, i, k_last]
                    thr_i = best_i[s, i, k_last]


@cuda.jit
def _merge_kernel(best_d, best_i, merged, out_d, out_i):
    """Merge each row's per-chunk sorted lists by ``(distance, index)``; write float32 distances."""
    i = cuda.grid(1)
    n_split, n, k = best_d.shape
    if i >= n:
        return
    for p in range(k):
        merged[i, p] = math.inf
        out_i[i, p] = _NO_INDEX
    for s in range(n_split):
        for t in range(k):
            j = best_i[s, i, t]
            if j == _NO_INDEX:
                break
            dist = best_d[s, i, t]
            if dist > merged[i, k - 1] or (dist == merged[i, k - 1] and j >= out_i[i, k - 1]):
                continue
            p = k - 1
            while p > 0 and (merged[i, p - 1] > dist or (merged[i, p - 1] == dist and out_i[i, p - 1] > j)):
                merged[i, p] = merged[i, p - 1]
                out_i[i, p] = out_i[i, p - 1]
                p -= 1
            merged[i, p] = dist
            out_i[i, p] = j
    for p in range(k):
        out_d[i, p] = float32(merged[i, p])


KERNELS = (_column_stats_kernel, _transpose_f64_kernel, _gower_topk_kernel, _merge_kernel)


def _column_stats(x: Any, low: Any, high: Any, name: str) -> None:
    """Fold ``x`` into the device min/max per column; reject infinities with the CPU path's message."""
    bad = cuda.to_device(np.zeros(1, np.int32))
    n, d = x.shape
    _column_stats_kernel[_blocks(_blocks(n, STATS_ROWS) * d, TPB), TPB](x, low, high, bad)
    if bad.copy_to_host()[0]:
        raise infinite_error(name)


def knn_gower_cuda(query: Any, reference: Any, k: int, exclude_self: bool, categorical: Any = None,
                   ranges: Any = None, weights: Any = None, *, n_split: int | None = None,
                   tile_rows: int | None = None) -> tuple[Any, Any]:
    """Exact Gower k-NN of two CUDA arrays (NaN or a negative categorical code = missing; see
    :mod:`hpcsynth.kernels.gower`). Returns Numba device arrays ``(float32 (n, k), int64 (n, k))``.

    ``n_split`` (reference chunks) and ``tile_rows`` (reference rows per shared-memory tile) default to what
    fills the device; tests set them to exercise the chunk merge and the tile loop on tiny inputs.
    """
    q = _as_device_array(query)
    r = q if reference is query else _as_device_array(reference)
    check_shapes(q.shape, r.shape, k, exclude_self)
    for name, x in (("query", q), ("reference", r)):
        check_device_dtype(x.dtype, name)
    n, d = q.shape
    m = r.shape[0]
    if d > SMEM_DOUBLES:
        raise ValueError(f"the CUDA Gower kernel handles at most {SMEM_DOUBLES} columns, got {d}")
    low = cuda.to_device(np.full(d, np.inf))
    high = cuda.to_device(np.full(d, -np.inf))
    _column_stats(q, low, high, "query")
    if r is not q:
        _column_stats(r, low, high, "reference")

    def device_span() -> np.ndarray:
        lo, hi = low.copy_to_host(), high.copy_to_host()
        return np.where(lo <= hi, hi - lo, 0.0)

    is_cat, inv_range, w = gower_columns(d, categorical, ranges, weights, device_span)
    q_t = cuda.device_array((d, n), np.float64)
    _transpose_f64_kernel[(_blocks(n, TPB // 4), _blocks(d, 4)), (TPB // 4, 4)](q, q_t)
    tile_rows = int(tile_rows or SMEM_DOUBLES // d)
    if not 1 <= tile_rows * d <= SMEM_DOUBLES:
        raise ValueError(f"tile_rows * columns must be at most {SMEM_DOUBLES}, got {tile_rows} * {d}")
    n_split = int(n_split or _n_split(n, m))
    best_d = cuda.device_array((n_split, n, k), np.float64)
    best_i = cuda.device_array((n_split, n, k), np.int64)
    _gower_topk_kernel[(_blocks(n, TPB), n_split), TPB](
        q_t, r, cuda.to_device(is_cat), cuda.to_device(inv_range), cuda.to_device(w), bool(exclude_self),
        tile_rows, best_d, best_i)
    merged = cuda.device_array((n, k), np.float64)
    out_d = cuda.device_array((n, k), np.float32)
    out_i = cuda.device_array((n, k), np.int64)
    _merge_kernel[_blocks(n, TPB), TPB](best_d, best_i, merged, out_d, out_i)
    return out_d, out_i
