"""DP noise on the CPU: the Philox Gaussian stream of :mod:`hpcsynth.kernels.philox`, and a fused clip by global
norm plus noise on a flat float32 buffer, as parallel Numba loops over blocks of four elements.

The global norm is a sum of squares in float64 over fixed chunks of ``CHUNK`` elements (each summed in
order, then the chunk sums in order): the same grouping as the CUDA kernels, whatever the thread count, so
clipping too is identical on both targets (each square of a float32 is exact in float64).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import float32, float64, njit, prange, uint64

from .philox import build
from .source_cache import cache_with_sources

CHUNK = 4096
TILE = 1024  # counter blocks per parallel task
# error_model="numpy": no ZeroDivisionError branch after each division (none can be zero), which would block
# vectorising; the IEEE results are the same
stream = build(njit(inline="always", error_model="numpy"))
_MASK, _32 = np.uint64(0xFFFFFFFF), np.uint64(32)


@njit(parallel=True, cache=True)
def chunk_squares_cpu(x):
    """Per chunk of ``CHUNK`` elements, the in-order float64 sum of squares."""
    n = x.shape[0]
    out = np.empty((n + CHUNK - 1) // CHUNK, np.float64)
    for c in prange(out.shape[0]):
        s = 0.0
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            s += float64(x[i]) * float64(x[i])
        out[c] = s
    return out


@njit(cache=True)
def ordered_sum(x):
    """The in-order sum (``np.sum`` is pairwise; the CUDA path sums in this order)."""
    s = 0.0
    for v in x:
        s += v
    return s


# Cached with the generator's file in the key: Numba alone would not notice a change to philox.py.
@njit(parallel=True)
def scale_and_noise_cpu(x, scale, std, step, rank, k0, k1):
    """``x[i] = float32(scale * x[i] + std * z_i)`` in place; ``scale`` and ``std`` float32 (with ``scale``
    zero, ``x`` is only written: NaN or infinite leftovers in an uninitialised buffer are not read).

    Each parallel task takes ``TILE`` counter blocks in stages, each a plain loop over arrays (Philox words,
    radii, directions, then the update) rather than one loop over ``normals4``: LLVM vectorises the radius
    and direction stages, which it does not for the fused loop (about three times faster on one core).
    Every value is computed by the same functions, combined in the same way, as ``normals4``.
    """
    n = x.shape[0]
    blocks = (n + 3) // 4
    for t in prange((blocks + TILE - 1) // TILE):
        first = t * TILE
        count = min(blocks, first + TILE) - first
        words = np.empty((4, TILE), np.uint64)
        for j in range(count):
            b = uint64(first + j)
            words[0, j], words[1, j], words[2, j], words[3, j] = stream.philox(
                b & _MASK, b >> _32, step, rank, k0, k1)
        radius = np.empty((2, TILE), np.float32)
        cos = np.empty((2, TILE), np.float32)
        sin = np.empty((2, TILE), np.float32)
        for pair in range(2):
            for j in range(count):
                radius[pair, j] = stream.radius(words[2 * pair, j])
            for j in range(count):
                cos[pair, j], sin[pair, j] = stream.direction(words[2 * pair + 1, j])
        for j in range(count):
            for pair in range(2):
                for half in range(2):
                    i = 4 * (first + j) + 2 * pair + half
                    if i < n:
                        z = stream.mad(radius[pair, j], sin[pair, j] if half else cos[pair, j], 0.0)
                        kept = float64(x[i]) * float64(scale) if scale != 0 else 0.0
                        x[i] = float32(kept + float64(std) * float64(z))


cache_with_sources(scale_and_noise_cpu, Path(__file__).with_name("philox.py"))
