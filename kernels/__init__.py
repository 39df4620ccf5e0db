"""Numba kernels for hpcsynth, CPU (parallel njit) and CUDA behind one call.

``nearest_neighbours(query, reference, k=2, metric="euclidean", exclude_self=False, *, categorical=None,
ranges=None, weights=None) -> (distances, indices)``: exact k-nearest neighbours (float32 distances, int64
indices, ties to the lower index) for distance-to-closest-record, nearest-neighbour distance ratios and
membership inference. numpy input runs on the CPU, CUDA arrays on their GPU; ``metric="gower"`` handles mixed
numeric/categorical codes with missing values (CPU and GPU, identical results). See :mod:`hpcsynth.kernels.api`.

``gaussian_noise(out, std, seed, rank, step)`` and ``clip_and_noise(buffer, max_norm, std, seed, rank, step)``:
DP noise from a counter-based Philox stream, in place, identical on CPU and GPU (:mod:`.noise`).
``histogram(codes, n_bins)`` and ``contingency(a, b, n_a, n_b)``: counts of coded columns (:mod:`.counts`).
"""
from .api import nearest_neighbours
from .counts import contingency, histogram
from .noise import clip_and_noise, gaussian_noise

__all__ = ["clip_and_noise", "contingency", "gaussian_noise", "histogram", "nearest_neighbours"]
