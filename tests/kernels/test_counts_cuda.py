"""The CUDA counting kernels equal numpy in Numba's CUDA simulator (in a child process: the simulator replaces
``numba.cuda`` for the whole process), and still compile for Hopper."""
import textwrap

import numpy as np
import pytest
from cuda_simulator import cuda_kernels, hopper_ptx, run_simulated
from numba import boolean, cuda, int8, int32, int64

from hpcsynth.kernels import counts_cuda

SIMULATED_CHECKS = textwrap.dedent("""
    import numpy as np
    from numba import cuda
    from hpcsynth.kernels import contingency, counts_cuda, histogram

    rng = np.random.default_rng(5)
    a = rng.integers(-1, 4, 300)
    b = rng.integers(-1, 3, 300).astype(np.int32)
    assert histogram(cuda.to_device(a), 5).copy_to_host().tolist() == np.bincount(a[a >= 0], minlength=5).tolist()
    expected = np.zeros((4, 3), np.int64)
    keep = (a >= 0) & (b >= 0)
    np.add.at(expected, (a[keep], b[keep]), 1)
    got = contingency(cuda.to_device(a), cuda.to_device(b), 4, 3).copy_to_host()
    assert np.array_equal(got, expected), (got, expected)
    counts_cuda.SMEM_BINS = 4  # too few shared counters: the global-memory kernel takes over
    got = contingency(cuda.to_device(a), cuda.to_device(b), 4, 3).copy_to_host()
    assert np.array_equal(got, expected), (got, expected)
    try:
        histogram(cuda.to_device(a), 3)
    except ValueError as err:
        assert "at or above n_bins=3" in str(err)
    else:
        raise AssertionError("out-of-range code accepted")
    print("SIMULATED OK")
""")


def test_cuda_counts_equal_numpy_in_the_simulator():
    run_simulated(SIMULATED_CHECKS)


SIGNATURES = {name: [(t[:], t[:], int64, int64, boolean, int64[:]) for t in (int8, int32, int64)]
              for name in ("_shared_count_kernel", "_global_count_kernel")}


def test_every_cuda_kernel_has_a_ptx_signature_here():
    kernels = cuda_kernels(counts_cuda)
    assert kernels == set(SIGNATURES)
    assert {k.py_func.__name__ for k in counts_cuda.KERNELS} == kernels


@pytest.mark.parametrize("name, signature", [(n, s) for n, sigs in SIGNATURES.items() for s in sigs])
def test_cuda_kernel_compiles_to_ptx_for_hopper(name, signature):
    ptx = hopper_ptx(counts_cuda, name, signature)
    assert "atom" in ptx


@pytest.mark.skipif(not cuda.is_available(), reason="needs a CUDA GPU")
def test_counts_on_the_gpu_equal_the_cpu():
    from hpcsynth.kernels import contingency

    rng = np.random.default_rng(9)
    a, b = rng.integers(-1, 100, 1_000_000), rng.integers(0, 90, 1_000_000)
    np.testing.assert_array_equal(contingency(cuda.to_device(a), cuda.to_device(b), 100, 90).copy_to_host(),
                                  contingency(a, b, 100, 90))
