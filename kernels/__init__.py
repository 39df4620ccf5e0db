"""Numba kernels for hpcsynth, CPU (parallel njit) and CUDA behind one call.

``nearest_neighbours(query, reference, k=2, metric="euclidean", exclude_self=False, *, categorical=None,
ranges=None, weights=None) -> (distances, indices)``: exact k-nearest neighbours (float32 distances, int64
indices, ties to the lower index) for distance-to-closest-record, nearest-neighbour distance ratios and
membership inference. numpy input runs on the CPU, CUDA arrays on their GPU (Euclidean); ``metric="gower"``
handles mixed numeric/categorical codes with missing values (CPU). See :mod:`hpcsynth.kernels.api`.
"""
from .api import nearest_neighbours

__all__ = ["nearest_neighbours"]
