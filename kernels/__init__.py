"""Numba kernels for hpcsynth: exact nearest neighbours (CPU and CUDA behind one call).

``from hpcsynth.kernels import nearest_neighbours`` is the entry point; see :mod:`hpcsynth.kernels.api`.
"""
from .api import nearest_neighbours

__all__ = ["nearest_neighbours"]
