"""DP noise on a CUDA device: the same Philox Gaussian stream and fused clip plus noise as
:mod:`hpcsynth.kernels.noise_cpu`, bit for bit (the generator is one source, :mod:`hpcsynth.kernels.philox`,
compiled here as device functions).

* ``_blend_kernel``: one thread per block of four elements (grid-stride), ``x = scale * x + std * z``.
* ``_chunk_squares_kernel`` and ``_ordered_sum_kernel``: the global norm with the CPU's grouping (in-order
  float64 sums over chunks of ``CHUNK`` elements, then over the chunks), so clipping agrees bit for bit too.
  One thread per chunk reads contiguous memory: slower than a tree reduction, but the norm is one pass per
  step over a parameter buffer, next to the per-sample gradients that produced it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda, float32, float64, uint64

from .noise_cpu import CHUNK
from .philox import build

TPB = 256
normals4 = build(cuda.jit(device=True)).normals4


@cuda.jit
def _blend_kernel(x, scale, std, step, rank, k0, k1):
    """``x[i] = float32(scale * x[i] + std * z_i)``; ``x`` is not read when ``scale`` is zero."""
    n = x.shape[0]
    blocks = (n + 3) // 4
    for b in range(cuda.grid(1), blocks, cuda.gridsize(1)):
        z0, z1, z2, z3 = normals4(uint64(b), step, rank, k0, k1)
        for lane in range(4):
            i = 4 * b + lane
            if i < n:
                z = z0 if lane == 0 else (z1 if lane == 1 else (z2 if lane == 2 else z3))
                kept = float64(x[i]) * float64(scale) if scale != 0 else 0.0
                x[i] = float32(kept + float64(std) * float64(z))


@cuda.jit
def _chunk_squares_kernel(x, out):
    """``out[c]``: the in-order float64 sum of squares of chunk ``c``."""
    c = cuda.grid(1)
    n = x.shape[0]
    if c < out.shape[0]:
        s = 0.0
        stop = (c + 1) * CHUNK
        for i in range(c * CHUNK, stop if stop < n else n):
            s += float64(x[i]) * float64(x[i])
        out[c] = s


@cuda.jit
def _ordered_sum_kernel(partials, total):
    """One thread: the in-order sum of the chunk sums (the CPU's order)."""
    if cuda.grid(1) == 0:
        s = 0.0
        for i in range(partials.shape[0]):
            s += partials[i]
        total[0] = s


KERNELS = (_blend_kernel, _chunk_squares_kernel, _ordered_sum_kernel)


def _grid(n_blocks: int) -> int:
    """Enough thread blocks for the work, capped (the blend kernel strides over the rest)."""
    return max(1, min((n_blocks + TPB - 1) // TPB, 65535))


def squared_norm_cuda(x: Any) -> float:
    """The float64 sum of squares of a 1-D float32 device array, grouped as on the CPU."""
    partials = cuda.device_array((x.shape[0] + CHUNK - 1) // CHUNK, np.float64)
    _chunk_squares_kernel[_grid(partials.shape[0]), TPB](x, partials)
    total = cuda.device_array(1, np.float64)
    _ordered_sum_kernel[1, 1](partials, total)
    return float(total.copy_to_host()[0])


def blend_cuda(x: Any, scale: np.float32, std: np.float32, step: np.uint64, rank: np.uint64, k0: np.uint64,
               k1: np.uint64) -> None:
    """``x = scale * x + std * z`` in place on the device (``z`` the Philox stream)."""
    _blend_kernel[_grid((x.shape[0] + 3) // 4), TPB](x, scale, std, step, rank, k0, k1)
