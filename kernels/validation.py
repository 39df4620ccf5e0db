"""Input checks shared by the CPU and CUDA paths, so both reject the same inputs with the same messages."""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def as_host_matrix(x: Any, name: str) -> np.ndarray:
    """A C-contiguous float32/float64 matrix; other real dtypes become float64 (exact for integer codes)."""
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    return np.ascontiguousarray(a)


def check_shapes(qshape: tuple[int, ...], rshape: tuple[int, ...], k: Any, exclude_self: bool) -> None:
    """Two non-empty matrices with the same columns, and ``1 <= k <=`` the reference rows available."""
    for name, shape in (("query", qshape), ("reference", rshape)):
        if len(shape) != 2:
            raise ValueError(f"{name} must be a 2-D array (rows x columns), got shape {tuple(shape)}")
        if shape[0] == 0 or shape[1] == 0:
            raise ValueError(f"{name} is empty (shape {tuple(shape)})")
    if qshape[1] != rshape[1]:
        raise ValueError(f"query has {qshape[1]} columns but reference has {rshape[1]}")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k must be an integer, got {k!r}")
    if exclude_self and qshape[0] != rshape[0]:
        raise ValueError("exclude_self=True treats query row i as reference row i, so both need the same "
                         f"number of rows; got {qshape[0]} and {rshape[0]}")
    available = rshape[0] - int(bool(exclude_self))
    if not 1 <= k <= available:
        raise ValueError(f"k must be between 1 and {available} (reference rows"
                         f"{' minus the excluded self' if exclude_self else ''}), got {k}")


def nonfinite_error(name: str) -> ValueError:
    return ValueError(f"{name} contains NaN or infinite values; impute or drop them first "
                      "(metric='gower' is the one that handles missing values)")


def check_finite(a: np.ndarray, name: str) -> None:
    if not np.isfinite(a).all():
        raise nonfinite_error(name)


def infinite_error(name: str) -> ValueError:
    """Gower accepts NaN (missing) but not infinities, on the CPU and the GPU alike."""
    return ValueError(f"{name} contains infinite values (for Gower, mark missing values as NaN)")


def check_device_dtype(dtype: Any, name: str) -> None:
    """The CUDA kernels read float32 or float64 (convert codes on the device first, e.g. ``x.astype``)."""
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} on the GPU must be float32 or float64, got {dtype}")
