"""Exact Euclidean k-nearest neighbours on a CUDA device: the same candidate / re-rank / certificate scheme as
:mod:`hpcsynth.kernels.knn_cpu`, with the data staying on the GPU throughout.

``_candidates_kernel`` keeps each query row's float32 candidates (from direct differences, see there);
``_rerank_kernel`` recomputes them in float64, certifies them, and brute-forces the row in float64 where the
certificate fails. The kernels call no device functions (not even ``min``, whose CUDA overload is one):
``compile_ptx`` can then build them without a GPU, which is how the tests prove they still compile for Hopper
(cc 9.0).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda, float32, float64, int64

from .knn_cpu import EXTRA_CANDIDATES
from .validation import check_device_dtype, check_shapes, nonfinite_error

TPB = 128
SMEM_FLOATS = 8192  # 32 KiB of static shared memory per block for the reference tile
_U32 = float(np.finfo(np.float32).eps) / 2.0
_NO_INDEX = np.iinfo(np.int64).max


@cuda.jit
def _row_stats_kernel(x, bad, max_norm2):
    """Flag any non-finite value and keep the largest squared row norm (for the float64 cast slack)."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        s = 0.0
        for c in range(x.shape[1]):
            v = float64(x[i, c])
            if not math.isfinite(v):
                bad[0] = 1
            s += v * v
        cuda.atomic.max(max_norm2, 0, s)


@cuda.jit
def _transpose_f32_kernel(x, out):
    """``out[c, i] = float32(x[i, c])``: threads of a warp then read consecutive query rows (coalesced)."""
    i, c = cuda.grid(2)
    if i < x.shape[0] and c < x.shape[1]:
        out[c, i] = float32(x[i, c])


@cuda.jit
def _candidates_kernel(q_t, r, vals, idxs, exclude_self):
    """Per query row and reference chunk, the ``C`` smallest float32 squared distances (sorted) and indices.

    One thread per query row; each block stages a tile of reference rows in shared memory (``SMEM_FLOATS``
    floats, so ``SMEM_FLOATS // d`` rows per tile), and every thread of the block streams the tile against its
    own query row. Distances are float32 *direct differences* (not the ``|r|^2 - 2 q.r`` expansion): on a GPU
    the extra subtraction is cheap and the error becomes relative, ``|s - e| <= (d + 3) u e``, so far fewer
    rows need the fallback. The reference may be cut into ``n_split`` chunks (grid dimension y) so that a few
    queries still fill the device."""
    tile = cuda.shared.array(SMEM_FLOATS, float32)
    d = q_t.shape[0]
    n = q_t.shape[1]
    m = r.shape[0]
    n_split = vals.shape[0]
    c_last = vals.shape[2] - 1
    s = cuda.blockIdx.y
    tid = cuda.threadIdx.x
    i = cuda.blockIdx.x * cuda.blockDim.x + tid
    if i < n:
        for p in range(c_last + 1):
            vals[s, i, p] = math.inf
            idxs[s, i, p] = -1
    chunk = (m + n_split - 1) // n_split
    start = s * chunk
    stop = start + chunk if start + chunk < m else m
    rows_per_tile = SMEM_FLOATS // d
    thr = float32(math.inf)
    for j0 in range(start, stop, rows_per_tile):
        rows = rows_per_tile if j0 + rows_per_tile < stop else stop - j0
        cuda.syncthreads()
        for e in range(tid, rows * d, cuda.blockDim.x):
            tile[e] = float32(r[j0 + e // d, e % d])
        cuda.syncthreads()
        if i < n:
            for t in range(rows):
                acc = float32(0.0)
                for c in range(d):
                    diff = q_t[c, i] - tile[t * d + c]
                    acc += diff * diff
                j = j0 + t
                if acc < thr and not (exclude_self and j == i):
                    p = c_last
                    while p > 0 and vals[s, i, p - 1] > acc:
                        vals[s, i, p] = vals[s, i, p - 1]
                        idxs[s, i, p] = idxs[s, i, p - 1]
                        p -= 1
                    vals[s, i, p] = acc
                    idxs[s, i, p] = j
                    thr = vals[s, i, c_last]


@cuda.jit
def _rerank_kernel(q, r, vals, idxs, r_max, cast_slack, exclude_self, best_d, out_d, out_i):
    """Exact float64 top-k of each row's candidates; brute force where the certificate fails.

    Certificate: a non-candidate's float32 value was ``>= tau`` (the smallest of the chunks' last kept
    values), and ``s >= e / (1 + 2 (d + 3) u)`` bounds the float32 direct-difference error with a factor of
    two to spare, so its exact distance is at least ``sqrt(tau / (1 + 2 (d + 3) u))``, less the distance the
    float64-to-float32 cast can move two rows (``cast_slack * (|q| + R)``, zero for float32 input). Phase 0
    ranks the candidates; phase 1 runs only if that lower bound does not beat the k-th exact distance.
    """
    i = cuda.grid(1)
    n, d = q.shape
    if i >= n:
        return
    m = r.shape[0]
    k = out_i.shape[1]
    n_split, _, n_cand = idxs.shape
    for phase in range(2):
        if phase == 1:
            tau = math.inf
            for s in range(n_split):
                if vals[s, i, n_cand - 1] < tau:
                    tau = float64(vals[s, i, n_cand - 1])
            if tau == math.inf:
                break
            qn = 0.0
            for c in range(d):
                qn += float64(q[i, c]) * float64(q[i, c])
            lower = math.sqrt(tau / (1.0 + 2.0 * (d + 3) * _U32)) - cast_slack * (math.sqrt(qn) + r_max)
            if lower > math.sqrt(best_d[i, k - 1]) * (1.0 + 1e-12):
                break
        for c in range(k):
            best_d[i, c] = math.inf
            out_i[i, c] = _NO_INDEX
        count = n_split * n_cand if phase == 0 else m
        for t in range(count):
            j = idxs[t // n_cand, i, t % n_cand] if phase == 0 else int64(t)
            if j < 0 or (exclude_self and j == i):
                continue
            dist = 0.0
            for c in range(d):
                diff = float64(q[i, c]) - float64(r[j, c])
                dist += diff * diff
            if dist < best_d[i, k - 1] or (dist == best_d[i, k - 1] and j < out_i[i, k - 1]):
                p = k - 1
                while p > 0 and (best_d[i, p - 1] > dist or (best_d[i, p - 1] == dist and out_i[i, p - 1] > j)):
                    best_d[i, p] = best_d[i, p - 1]
                    out_i[i, p] = out_i[i, p - 1]
                    p -= 1
                best_d[i, p] = dist
                out_i[i, p] = j
    for c in range(k):
        out_d[i, c] = float32(math.sqrt(best_d[i, c]))


KERNELS = (_row_stats_kernel, _transpose_f32_kernel, _candidates_kernel, _rerank_kernel)


def _blocks(n: int, per_block: int) -> int:
    return (n + per_block - 1) // per_block


def _as_device_array(x: Any) -> Any:
    """Numba device arrays as they are; any other ``__cuda_array_interface__`` object wrapped without a copy."""
    return x if getattr(x, "__cuda_ndarray__", False) else cuda.as_cuda_array(x)


def _checked_stats(x: Any, name: str) -> float:
    """Reject non-finite values; return the largest row norm."""
    bad = cuda.to_device(np.zeros(1, np.int32))
    max_norm2 = cuda.to_device(np.zeros(1, np.float64))
    _row_stats_kernel[_blocks(x.shape[0], TPB), TPB](x, bad, max_norm2)
    if bad.copy_to_host()[0]:
        raise nonfinite_error(name)
    return float(np.sqrt(max_norm2.copy_to_host()[0]))


def _n_split(n_query: int, n_ref: int) -> int:
    """Enough reference chunks for about four blocks per multiprocessor when queries alone are too few."""
    sms = getattr(cuda.current_context().device, "MULTIPROCESSOR_COUNT", 1)
    want = _blocks(4 * sms, _blocks(n_query, TPB))
    return int(max(1, min(want, _blocks(n_ref, TPB))))


def knn_euclidean_cuda(query: Any, reference: Any, k: int, exclude_self: bool) -> tuple[Any, Any]:
    """Exact Euclidean k-NN of two CUDA arrays; returns Numba device arrays ``(float32 (n, k), int64 (n, k))``."""
    q = _as_device_array(query)
    r = q if reference is query else _as_device_array(reference)
    check_shapes(q.shape, r.shape, k, exclude_self)
    for name, x in (("query", q), ("reference", r)):
        check_device_dtype(x.dtype, name)
    n, d = q.shape
    m = r.shape[0]
    if d > SMEM_FLOATS:
        raise ValueError(f"the CUDA kernel handles at most {SMEM_FLOATS} columns, got {d}")
    _checked_stats(q, "query")
    r_max = _checked_stats(r, "reference")
    q_t = cuda.device_array((d, n), np.float32)
    _transpose_f32_kernel[(_blocks(n, 32), _blocks(d, 8)), (32, 8)](q, q_t)
    n_cand = min(k + EXTRA_CANDIDATES, m - int(exclude_self))
    n_split = _n_split(n, m)
    vals = cuda.device_array((n_split, n, n_cand), np.float32)
    idxs = cuda.device_array((n_split, n, n_cand), np.int64)
    _candidates_kernel[(_blocks(n, TPB), n_split), TPB](q_t, r, vals, idxs, exclude_self)
    cast_slack = 1.01 * _U32 if np.float64 in (q.dtype, r.dtype) else 0.0
    best_d = cuda.device_array((n, k), np.float64)
    out_d = cuda.device_array((n, k), np.float32)
    out_i = cuda.device_array((n, k), np.int64)
    _rerank_kernel[_blocks(n, TPB), TPB](q, r, vals, idxs, r_max, cast_slack, exclude_self, best_d, out_d, out_i)
    return out_d, out_i
