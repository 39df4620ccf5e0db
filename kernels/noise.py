"""The public DP-noise calls: Gaussian noise from the counter-based stream, and clip-by-global-norm plus noise,
in place on a flat float32 buffer, on the CPU (numpy) or on the GPU (CUDA arrays), with identical results.

Noise element ``i`` at ``(seed, rank, step)`` is a pure function of those four numbers (see
:mod:`hpcsynth.kernels.philox`): a job that resumes at step ``s`` draws exactly what it would have drawn, and
no two (rank, step) pairs share noise.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .api import _is_cuda
from .noise_cpu import chunk_squares_cpu, ordered_sum, scale_and_noise_cpu

_U32 = 1 << 32


def _words(seed: Any, rank: Any, step: Any) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    """``(step, rank, key0, key1)`` as uint64 words, after checking the ranges the counter layout holds."""
    for name, value, bound in (("seed", seed, 1 << 64), ("rank", rank, _U32), ("step", step, _U32)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < bound:
            raise ValueError(f"{name} must be an integer in [0, 2^{bound.bit_length() - 1}), got {value!r}")
    seed = int(seed)
    return np.uint64(step), np.uint64(rank), np.uint64(seed & (_U32 - 1)), np.uint64(seed >> 32)


def _checked_std(std: float, name: str = "std") -> np.float32:
    if not (math.isfinite(std) and std >= 0):
        raise ValueError(f"{name} must be finite and non-negative, got {std!r}")
    return np.float32(std)


def _host_buffer(x: Any) -> np.ndarray:
    if not (isinstance(x, np.ndarray) and x.ndim == 1 and x.dtype == np.float32 and x.flags.c_contiguous
            and x.flags.writeable):
        raise ValueError("the buffer must be a writable, contiguous, 1-D float32 numpy array or CUDA array, got "
                         f"{type(x).__name__} {getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}")
    return x


def _device_buffer(x: Any) -> Any:
    from numba import cuda

    d = x if getattr(x, "__cuda_ndarray__", False) else cuda.as_cuda_array(x)
    if d.ndim != 1 or d.dtype != np.float32 or not d.is_c_contiguous():
        raise ValueError(f"the buffer must be a contiguous 1-D float32 CUDA array, got {d.dtype} {d.shape}")
    return d


def gaussian_noise(out: Any, std: float, seed: int, rank: int, step: int) -> Any:
    """Fill ``out`` (1-D float32, numpy or CUDA) with ``std * z``, ``z`` the standard normal stream of
    ``(seed, rank, step)``; returns ``out``. ``seed < 2^64``, ``rank, step < 2^32``."""
    words = _words(seed, rank, step)
    s = _checked_std(std)
    if _is_cuda(out):
        from .noise_cuda import blend_cuda

        blend_cuda(_device_buffer(out), np.float32(0.0), s, *words)
    else:
        scale_and_noise_cpu(_host_buffer(out), np.float32(0.0), s, *words)
    return out


def clip_scale(squared_norm: float, max_norm: float) -> np.float32:
    """The float32 factor that brings a vector of the given squared norm to norm at most ``max_norm``: 1 when
    it is already within, else ``max_norm / norm`` rounded down, so that ``scale * norm <= max_norm``."""
    norm = math.sqrt(squared_norm)
    if norm <= max_norm:
        return np.float32(1.0)
    scale = np.float32(max_norm / norm)
    while float(scale) * norm > max_norm:
        scale = np.nextafter(scale, np.float32(0.0))
    return scale


def clip_and_noise(buffer: Any, max_norm: float, std: float, seed: int, rank: int, step: int) -> float:
    """In place: ``buffer = buffer * min(1, max_norm / ||buffer||) + std * z``, ``z`` the stream of
    ``(seed, rank, step)``, on the buffer's device; returns the norm before clipping.

    ``max_norm`` may be ``inf`` (noise only). The norm is a float64 sum with a fixed grouping and each element
    is rounded once, so the CPU and the GPU give the same bits."""
    if not (max_norm > 0):
        raise ValueError(f"max_norm must be positive, got {max_norm!r}")
    words = _words(seed, rank, step)
    s = _checked_std(std)
    if _is_cuda(buffer):
        from .noise_cuda import blend_cuda, squared_norm_cuda

        x = _device_buffer(buffer)
        squared = squared_norm_cuda(x)
        blend = blend_cuda
    else:
        x = _host_buffer(buffer)
        squared = float(ordered_sum(chunk_squares_cpu(x)))
        blend = scale_and_noise_cpu
    if not math.isfinite(squared):
        raise ValueError("the buffer holds NaN or infinite values")
    blend(x, clip_scale(squared, max_norm), s, *words)
    return math.sqrt(squared)
