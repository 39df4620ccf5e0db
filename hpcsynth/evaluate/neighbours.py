"""Where the evaluation's nearest-neighbour searches run: this rank's GPU when Numba sees one, else the CPU.

`hpcsynth.kernels.nearest_neighbours` runs where its inputs live; this module decides where that is for DCR,
NNDR, membership and attribute inference and authenticity. With a CUDA device each matrix is copied once to
this rank's GPU (rank i on GPU i mod count, the placement `hpcsynth.models.device.resolve_device` gives the
generators) and the results come back as numpy. Without one the matrices stay numpy and the CPU kernel runs.
Both kernels are exact with ties to the lower index, so a score does not depend on where it was computed.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hpcsynth.comm import local_rank
from hpcsynth.kernels import nearest_neighbours
from hpcsynth.kernels.validation import as_host_matrix

DEVICES = ("auto", "cpu", "cuda")


class NeighbourSearch:
    """Exact k nearest neighbours among the matrices of one score, on one device chosen when it is built.

    Parameters
    ----------
    device
        ``"auto"``: this rank's GPU when ``numba.cuda.is_available()``, else the CPU. ``"cpu"`` or ``"cuda"``
        force one (``"cuda"`` without a device is an error).

    A matrix is moved to the GPU the first time it is searched and reused after that (matched by identity, so
    pass the same array object again); the copies are freed with the search.
    """

    def __init__(self, device: str = "auto") -> None:
        if device not in DEVICES:
            raise ValueError(f"device: expected one of {DEVICES}, got {device!r}")
        from numba import cuda  # here: importing the evaluation leaves Numba's CUDA side unloaded

        use_gpu = cuda.is_available() if device == "auto" else device == "cuda"
        if use_gpu and not cuda.is_available():
            raise RuntimeError("device='cuda' but Numba finds no CUDA device")
        self._gpu = cuda.gpus[local_rank() % len(cuda.gpus)] if use_gpu else None
        self._on_gpu: dict[int, tuple[np.ndarray, Any]] = {}

    @property
    def device(self) -> str:
        """``"cuda:<index>"`` or ``"cpu"``."""
        return "cpu" if self._gpu is None else f"cuda:{self._gpu.id}"

    def __call__(self, query: np.ndarray, reference: np.ndarray, k: int = 1,
                 exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, indices)`` of the k nearest reference rows of every query row, as numpy arrays
        (see `hpcsynth.kernels.nearest_neighbours`)."""
        if self._gpu is None:
            return nearest_neighbours(query, reference, k=k, exclude_self=exclude_self)
        with self._gpu:
            d, i = nearest_neighbours(self._placed(query, "query"), self._placed(reference, "reference"), k=k,
                                      exclude_self=exclude_self)
            return d.copy_to_host(), i.copy_to_host()

    def _placed(self, matrix: np.ndarray, name: str) -> Any:
        """The device copy of `matrix`, made on first use (with the CPU path's dtype rule: floats as given,
        other real dtypes as float64)."""
        from numba import cuda

        key = id(matrix)
        if key not in self._on_gpu:
            self._on_gpu[key] = (matrix, cuda.to_device(as_host_matrix(matrix, name)))
        return self._on_gpu[key][1]
