"""Fixtures for the kernel tests (the float64 reference is in knn_reference.py)."""
import numpy as np
import pytest


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
