"""The one public entry point for nearest neighbours: validates once, then runs where the data lives.

Numpy (or anything ``np.asarray`` accepts) runs the CPU kernel; arrays exposing ``__cuda_array_interface__``
(Numba device arrays, CuPy arrays, torch CUDA tensors) run the CUDA kernel on their device, with no copy to
the host. Validation is shared so that both paths reject the same inputs with the same messages.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .gower import knn_gower_cpu
from .knn_cpu import knn_euclidean_cpu
from .validation import as_host_matrix, check_finite, check_shapes, infinite_error

METRICS = ("euclidean", "gower")


def _is_cuda(x: Any) -> bool:
    """CUDA arrays of any library, and Numba's own device arrays (which the CUDA simulator also marks)."""
    return hasattr(x, "__cuda_array_interface__") or getattr(x, "__cuda_ndarray__", False)


def nearest_neighbours(query: Any, reference: Any, k: int = 2, metric: str = "euclidean",
                       exclude_self: bool = False, *, categorical: Any = None, ranges: Any = None,
                       weights: Any = None) -> tuple[Any, Any]:
    """Exact k nearest reference rows of every query row.

    Parameters
    ----------
    query, reference
        2-D arrays ``(n_query, d)`` and ``(n_reference, d)``: numpy arrays (or array-likes) run on the CPU;
        CUDA arrays (anything with ``__cuda_array_interface__``) run on their GPU. Both must be on the same
        side. float32 and float64 are used as given; other real dtypes are converted to float64 on the CPU
        and rejected on the GPU.
    k
        Number of neighbours, ``1 <= k <= n_reference`` (``n_reference - 1`` with ``exclude_self``).
    metric
        ``"euclidean"``, or ``"gower"`` for mixed numeric and categorical columns stored as codes (CPU or GPU):
        ``sum_c w_c |x_c - y_c| / range_c`` over numeric and ``sum_c w_c [x_c != y_c]`` over categorical
        columns, divided by the weights of the columns present in both rows. Missing values (NaN, or a
        negative code in a categorical column) leave the column out of that pair; see
        :mod:`hpcsynth.kernels.gower`.
    exclude_self
        Treat query row ``i`` as reference row ``i`` and leave it out of its own neighbours (for distances
        within one table, e.g. nearest-neighbour distance ratios). Other rows with identical values are kept:
        a duplicated record is a neighbour at distance 0.
    categorical, ranges, weights
        Gower only. ``categorical``: column indices or a boolean mask (default: none). ``ranges``: per-column
        range for the numeric columns (default: max - min over query and reference, computed where the data
        lives). ``weights``:
        non-negative per-column weights (default: all 1).

    Returns
    -------
    distances, indices
        ``(n_query, k)`` float32 distances (not squared), ascending, and int64 reference row indices. The
        result is exact: it equals a float64 brute-force computation, with ties broken by the lower index.
        On the GPU both are Numba device arrays (``torch.as_tensor(x, device="cuda")`` wraps them without a
        copy); Gower results there equal the CPU's bit for bit.

    Raises
    ------
    ValueError
        For NaN (Euclidean only) or infinite values, empty inputs, mismatched columns, an unknown metric,
        ``k`` out of range, or Gower options that do not fit the columns.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if metric != "gower" and not (categorical is None and ranges is None and weights is None):
        raise ValueError("categorical, ranges and weights apply to metric='gower' only")
    if _is_cuda(query) or _is_cuda(reference):
        if not (_is_cuda(query) and _is_cuda(reference)):
            raise ValueError("query and reference must both be CUDA arrays or both host arrays")
        if metric == "gower":
            from .gower_cuda import knn_gower_cuda

            return knn_gower_cuda(query, reference, k, bool(exclude_self), categorical, ranges, weights)
        from .knn_cuda import knn_euclidean_cuda

        return knn_euclidean_cuda(query, reference, k, bool(exclude_self))
    q = as_host_matrix(query, "query")
    r = q if reference is query else as_host_matrix(reference, "reference")
    check_shapes(q.shape, r.shape, k, exclude_self)
    if metric == "gower":
        for name, x in (("query", q), ("reference", r)):
            if np.isinf(x).any():
                raise infinite_error(name)
        return knn_gower_cpu(q, r, int(k), bool(exclude_self), categorical, ranges, weights)
    check_finite(q, "query")
    if r is not q:
        check_finite(r, "reference")
    if q.dtype != r.dtype:
        q, r = q.astype(np.float64), r.astype(np.float64)
    return knn_euclidean_cpu(q, r, int(k), bool(exclude_self))
