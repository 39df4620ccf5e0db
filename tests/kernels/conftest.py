"""Shared helpers for the kernel tests: a float64 brute-force reference with the documented tie rule."""
import numpy as np
import pytest


def brute_force_knn(query, reference, k, exclude_self=False):
    """Float64 direct-difference distances, sorted by (distance, index): the ground truth."""
    q = np.asarray(query, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    d = np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(axis=-1))
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), order, d


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


@pytest.fixture
def hopper_without_gpu(monkeypatch):
    """Let ``cuda.compile_ptx`` compile kernels that call device functions on a machine without a GPU: a device
    function is compiled for the current device's compute capability, so pretend it is a Hopper (9.0)."""
    from types import SimpleNamespace

    import numba.cuda.dispatcher

    monkeypatch.setattr(numba.cuda.dispatcher, "get_current_device",
                        lambda: SimpleNamespace(compute_capability=(9, 0)))
