"""Histograms and contingency counts on a CUDA device: each thread block counts into shared memory with atomics
(fast on-chip, contended only within the block), then adds its non-zero counts to the global int64 counts.

Tables with more than ``SMEM_BINS`` cells count straight into global memory with atomics instead. The last
cell of the global counts collects codes at or above their number of bins (an error for the caller).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda, int32, int64

TPB = 256
SMEM_BINS = 8192  # 32 KiB of int32 counters per block
MAX_GRID = 1024  # blocks; a grid-stride loop covers the rest, so per-block int32 counts cannot overflow


@cuda.jit
def _shared_count_kernel(a, b, n_a, n_b, two_way, counts):
    """Shared-memory counts of ``a * n_b + b``; ``counts[n_a * n_b]`` collects out-of-range codes."""
    local = cuda.shared.array(SMEM_BINS, int32)
    cells = n_a * n_b
    for j in range(cuda.threadIdx.x, cells + 1, cuda.blockDim.x):
        local[j] = 0
    cuda.syncthreads()
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        ca = int64(a[i])
        cb = int64(b[i]) if two_way else int64(0)
        if ca >= 0 and cb >= 0:
            cuda.atomic.add(local, ca * n_b + cb if ca < n_a and cb < n_b else cells, 1)
    cuda.syncthreads()
    for j in range(cuda.threadIdx.x, cells + 1, cuda.blockDim.x):
        if local[j] != 0:
            cuda.atomic.add(counts, j, int64(local[j]))


@cuda.jit
def _global_count_kernel(a, b, n_a, n_b, two_way, counts):
    """The same counts with atomics on global memory, for tables too large for shared memory."""
    cells = n_a * n_b
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        ca = int64(a[i])
        cb = int64(b[i]) if two_way else int64(0)
        if ca >= 0 and cb >= 0:
            cuda.atomic.add(counts, ca * n_b + cb if ca < n_a and cb < n_b else cells, int64(1))


KERNELS = (_shared_count_kernel, _global_count_kernel)


def _device_codes(x: Any, name: str) -> Any:
    d = x if getattr(x, "__cuda_ndarray__", False) else cuda.as_cuda_array(x)
    if d.ndim != 1 or np.dtype(d.dtype).kind not in "iu":
        raise ValueError(f"{name} must be a 1-D array of integer codes, got {d.dtype} {d.shape}")
    return d


def count_cuda(a: Any, b: Any | None, n_a: int, n_b: int) -> tuple[Any, int]:
    """Device int64 counts of ``(n_a * n_b,)`` cells (of ``a`` alone when ``b`` is None), and the number of
    out-of-range codes."""
    da = _device_codes(a, "a" if b is not None else "codes")
    db = da if b is None else _device_codes(b, "b")
    if db.shape != da.shape:
        raise ValueError(f"a and b must have the same length, got {da.shape[0]} and {db.shape[0]}")
    cells = n_a * n_b
    counts = cuda.to_device(np.zeros(cells + 1, np.int64))
    grid = max(1, min((da.shape[0] + TPB - 1) // TPB, MAX_GRID))
    kernel = _shared_count_kernel if cells + 1 <= SMEM_BINS else _global_count_kernel
    kernel[grid, TPB](da, db, n_a, n_b, b is not None, counts)
    bad = int(counts[cells:].copy_to_host()[0])
    return counts[:cells], bad
