"""The CUDA Gower kernel returns the CPU kernel's distances and indices exactly (Numba's CUDA simulator, in a
child process), and still compiles for Hopper without contracting the float64 sums into FMAs."""
import re
import textwrap

import numpy as np
import pytest
from cuda_simulator import cuda_kernels, hopper_ptx, run_simulated
from numba import boolean, cuda, float32, float64, int32, int64

from hpcsynth.kernels import gower_cuda

SIMULATED_CHECKS = textwrap.dedent("""
    import numpy as np
    from numba import cuda
    from hpcsynth.kernels import nearest_neighbours
    from hpcsynth.kernels import gower_cuda
    from hpcsynth.kernels.gower_cuda import knn_gower_cuda

    gower_cuda.TPB = 16  # several blocks per launch, and fewer simulated threads (each one a Python thread)
    gower_cuda.STATS_ROWS = 4  # several threads fold each column into the device min/max

    def check(q, r, k, exclude_self=False, split=None, tile=None, **options):
        cpu_d, cpu_i = nearest_neighbours(q, r, k=k, metric="gower", exclude_self=exclude_self, **options)
        rd = cuda.to_device(r)
        qd = rd if q is r else cuda.to_device(q)
        if split is None:
            d, i = nearest_neighbours(qd, rd, k=k, metric="gower", exclude_self=exclude_self, **options)
        else:
            d, i = knn_gower_cuda(qd, rd, k, exclude_self, n_split=split, tile_rows=tile, **options)
        d, i = d.copy_to_host(), i.copy_to_host()
        assert d.dtype == np.float32 and i.dtype == np.int64, (d.dtype, i.dtype)
        np.testing.assert_array_equal(i, cpu_i)
        np.testing.assert_array_equal(d, cpu_d)

    def mixed(rng, n):
        return np.stack([rng.normal(60, 12, n), rng.integers(0, 2, n), rng.normal(27, 4, n),
                         rng.integers(0, 4, n)], axis=1)

    rng = np.random.default_rng(11)
    q, r = mixed(rng, 6), mixed(rng, 19)
    check(q, r, 3, categorical=[1, 3])  # default ranges from the device, defaults for the launch
    check(q.astype(np.float32), r.astype(np.float32), 2, split=3, tile=4, categorical=[1, 3])

    q[rng.random(q.shape) < 0.25] = np.nan  # missing values, negative codes, an empty row, an empty column
    r[rng.random(r.shape) < 0.25] = np.nan
    r[::4, 3] = -1
    r[5] = np.nan
    q[:, 2] = np.nan
    options = dict(categorical=np.array([False, True, False, True]), weights=[2.0, 0.5, 1.0, 1.0])
    check(q, r, 4, split=2, tile=3, **options)
    check(q, r, 4, split=2, tile=3, ranges=[50.0, 0.0, 0.0, 0.0], **options)

    codes = rng.integers(0, 2, size=(9, 3)).astype(np.float32)  # exact ties everywhere, duplicated rows
    codes[7] = codes[2]
    check(codes, codes, 3, exclude_self=True, split=3, tile=2, categorical=[0, 1, 2])
    check(codes, np.concatenate([codes, codes]), 5, split=4, tile=5, categorical=[0, 2])

    for bad_options, message in (({"weights": [1.0, -1.0, 1.0]}, "weights must be 3"),
                                 ({"categorical": [3]}, "column indices")):
        try:
            nearest_neighbours(cuda.to_device(codes), cuda.to_device(codes), metric="gower", **bad_options)
        except ValueError as err:
            assert message in str(err), err
        else:
            raise AssertionError(f"{bad_options} accepted")
    infinite = codes.copy()
    infinite[1, 1] = -np.inf
    for args, message in (((codes, infinite), "reference contains infinite values"),
                          ((codes.astype(np.int32), codes), "must be float32 or float64")):
        try:
            nearest_neighbours(*map(cuda.to_device, args), metric="gower")
        except ValueError as err:
            assert message in str(err), err
        else:
            raise AssertionError(message)
    print("SIMULATED OK")
""")


def test_cuda_gower_equals_the_cpu_in_the_simulator():
    run_simulated(SIMULATED_CHECKS)


F32_2D, F64_2D = float32[:, :], float64[:, :]
SIGNATURES = {
    "_column_stats_kernel": [(F32_2D, float64[:], float64[:], int32[:]), (F64_2D, float64[:], float64[:], int32[:])],
    "_transpose_f64_kernel": [(F32_2D, F64_2D), (F64_2D, F64_2D)],
    "_gower_topk_kernel": [(F64_2D, dtype, boolean[:], float64[:], float64[:], boolean, int64, float64[:, :, :],
                            int64[:, :, :]) for dtype in (F32_2D, F64_2D)],
    "_merge_kernel": [(float64[:, :, :], int64[:, :, :], F64_2D, F32_2D, int64[:, :])],
}


def test_every_cuda_kernel_has_a_ptx_signature_here():
    kernels = cuda_kernels(gower_cuda)
    assert kernels == set(SIGNATURES)
    assert {k.py_func.__name__ for k in gower_cuda.KERNELS} == kernels


@pytest.mark.parametrize("name, signature", [(n, s) for n, sigs in SIGNATURES.items() for s in sigs])
def test_cuda_kernel_compiles_to_ptx_for_hopper(name, signature):
    ptx = hopper_ptx(gower_cuda, name, signature)
    # Equal to the CPU bit for bit only without FMA contraction: any float64 FMA must add +0 (w * s + 0.0).
    fmas = re.findall(r"fma\.rn\.f64\s+[^;]*;", ptx)
    assert all(f.rstrip(";").endswith("0d0000000000000000") for f in fmas), fmas


@pytest.mark.skipif(not cuda.is_available(), reason="needs a CUDA GPU")
def test_gower_on_the_gpu_equals_the_cpu():
    from hpcsynth.kernels import nearest_neighbours

    rng = np.random.default_rng(4)
    q = np.stack([rng.normal(60, 12, 700), rng.integers(-1, 3, 700), rng.normal(27, 4, 700)], axis=1)
    r = np.stack([rng.normal(60, 12, 5000), rng.integers(-1, 3, 5000), rng.normal(27, 4, 5000)], axis=1)
    q[rng.random(q.shape) < 0.1] = np.nan
    r[rng.random(r.shape) < 0.1] = np.nan
    d, i = nearest_neighbours(cuda.to_device(q), cuda.to_device(r), k=5, metric="gower", categorical=[1])
    cpu_d, cpu_i = nearest_neighbours(q, r, k=5, metric="gower", categorical=[1])
    np.testing.assert_array_equal(i.copy_to_host(), cpu_i)
    np.testing.assert_array_equal(d.copy_to_host(), cpu_d)
