"""The CUDA nearest-neighbour kernels: exact in Numba's CUDA simulator, and still compiling for Hopper.

The simulator replaces ``numba.cuda`` for the whole process once ``NUMBA_ENABLE_CUDASIM=1`` is set before the
import, so those checks run in a child process and leave this one's CPU kernels alone.
"""
import textwrap

import numpy as np
import pytest
from cuda_simulator import cuda_kernels, hopper_ptx, run_simulated
from numba import boolean, cuda, float32, float64, int32, int64

from hpcsynth.kernels import knn_cuda

SIMULATED_CHECKS = textwrap.dedent("""
    import numpy as np
    from numba import cuda
    from knn_reference import brute_force_knn
    from hpcsynth.kernels import nearest_neighbours

    def gpu(q, r, k, exclude_self=False):
        rd = cuda.to_device(r)
        qd = rd if q is r else cuda.to_device(q)
        d, i = nearest_neighbours(qd, rd, k=k, exclude_self=exclude_self)
        return d.copy_to_host(), i.copy_to_host()

    def check(q, r, k, exclude_self=False):
        d, i = gpu(q, r, k, exclude_self)
        ref_d, ref_i, _ = brute_force_knn(q, r, k, exclude_self)
        assert d.dtype == np.float32 and i.dtype == np.int64, (d.dtype, i.dtype)
        np.testing.assert_array_equal(i, ref_i)
        np.testing.assert_allclose(d, ref_d, rtol=1e-6, atol=1e-6)

    rng = np.random.default_rng(7)
    check(rng.standard_normal((9, 3)).astype(np.float32), rng.standard_normal((21, 3)).astype(np.float32), 3)
    codes = rng.integers(0, 2, size=(12, 3)).astype(np.float32)
    check(codes, np.concatenate([codes, codes]), 4)
    x = rng.standard_normal((10, 2)).astype(np.float32)
    x[7] = x[2]
    check(x, x, 2, exclude_self=True)
    check(rng.standard_normal((2, 2)), rng.standard_normal((300, 2)), 2)

    j = np.arange(40)
    radius = 1000.0 + 1e-6 * (40 - j)
    circle = np.stack([radius * np.cos(j), radius * np.sin(j)], axis=1)
    assert gpu(np.zeros((1, 2)), circle, 2)[1].tolist() == [[39, 38]]

    bad = np.ones((3, 2), np.float32)
    bad[1, 1] = np.nan
    try:
        gpu(bad, np.ones((4, 2), np.float32), 1)
    except ValueError as err:
        assert "NaN or infinite" in str(err)
    else:
        raise AssertionError("NaN accepted")
    print("SIMULATED OK")
""")


def test_cuda_kernels_are_exact_in_the_simulator():
    run_simulated(SIMULATED_CHECKS)


F32_2D, F64_2D = float32[:, :], float64[:, :]
SIGNATURES = {
    "_row_stats_kernel": [(F32_2D, int32[:], float64[:]), (F64_2D, int32[:], float64[:])],
    "_transpose_f32_kernel": [(F32_2D, F32_2D), (F64_2D, F32_2D)],
    "_candidates_kernel": [(F32_2D, F32_2D, float32[:, :, :], int64[:, :, :], boolean),
                           (F32_2D, F64_2D, float32[:, :, :], int64[:, :, :], boolean)],
    "_rerank_kernel": [(dtype, dtype, float32[:, :, :], int64[:, :, :], float64, float64, boolean, F64_2D, F32_2D,
                        int64[:, :]) for dtype in (F32_2D, F64_2D)],
}


def test_every_cuda_kernel_has_a_ptx_signature_here():
    kernels = cuda_kernels(knn_cuda)
    assert kernels == set(SIGNATURES)
    assert {k.py_func.__name__ for k in knn_cuda.KERNELS} == kernels


@pytest.mark.parametrize("name, signature", [(n, s) for n, sigs in SIGNATURES.items() for s in sigs])
def test_cuda_kernel_compiles_to_ptx_for_hopper(name, signature):
    hopper_ptx(knn_cuda, name, signature)  # asserts the Hopper target


@pytest.mark.skipif(not cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_cuda_tensors_run_on_the_gpu_and_match_the_cpu():
    torch = pytest.importorskip("torch")
    from hpcsynth.kernels import nearest_neighbours

    rng = np.random.default_rng(3)
    q = rng.standard_normal((500, 32)).astype(np.float32)
    r = rng.standard_normal((3000, 32)).astype(np.float32)
    d, i = nearest_neighbours(torch.from_numpy(q).cuda(), torch.from_numpy(r).cuda(), k=2)
    cpu_d, cpu_i = nearest_neighbours(q, r, k=2)
    np.testing.assert_array_equal(i.copy_to_host(), cpu_i)
    np.testing.assert_allclose(d.copy_to_host(), cpu_d, rtol=1e-6)
