"""The CUDA noise kernels give the CPU's bits in Numba's CUDA simulator, and still compile for Hopper.

The simulator replaces ``numba.cuda`` for the whole process once ``NUMBA_ENABLE_CUDASIM=1`` is set before the
import, so those checks run in a child process and leave this one's CPU kernels alone.
"""
import textwrap

import numpy as np
import pytest
from cuda_simulator import cuda_kernels, hopper_ptx, run_simulated
from numba import cuda, float32, float64, uint64

from hpcsynth.kernels import noise_cuda

SIMULATED_CHECKS = textwrap.dedent("""
    import numpy as np
    from numba import cuda
    from hpcsynth.kernels import clip_and_noise, gaussian_noise

    def bits(x):
        return np.asarray(x).view(np.uint32)

    for n, std, seed, rank, step in [(37, 1.5, 2**40 + 5, 3, 7), (5, 0.25, 2**64 - 1, 2**32 - 1, 2**32 - 1)]:
        cpu = gaussian_noise(np.empty(n, np.float32), std, seed, rank, step)
        gpu = gaussian_noise(cuda.to_device(np.full(n, np.nan, np.float32)), std, seed, rank, step)
        assert np.array_equal(bits(cpu), bits(gpu.copy_to_host())), (cpu, gpu.copy_to_host())

    x = np.random.default_rng(1).standard_normal(9000).astype(np.float32)
    for max_norm in (2.0, 1e6):
        on_cpu, on_gpu = x.copy(), cuda.to_device(x)
        assert clip_and_noise(on_cpu, max_norm, 0.3, 11, 0, 2) == clip_and_noise(on_gpu, max_norm, 0.3, 11, 0, 2)
        assert np.array_equal(bits(on_cpu), bits(on_gpu.copy_to_host()))
    try:
        gaussian_noise(cuda.to_device(np.zeros(4)), 1.0, 0, 0, 0)
    except ValueError as err:
        assert "float32" in str(err)
    else:
        raise AssertionError("float64 buffer accepted")
    print("SIMULATED OK")
""")


def test_cuda_noise_equals_the_cpu_bit_for_bit_in_the_simulator():
    run_simulated(SIMULATED_CHECKS)


SIGNATURES = {
    "_blend_kernel": [(float32[:], float32, float32, uint64, uint64, uint64, uint64)],
    "_chunk_squares_kernel": [(float32[:], float64[:])],
    "_ordered_sum_kernel": [(float64[:], float64[:])],
}


def test_every_cuda_kernel_has_a_ptx_signature_here():
    kernels = cuda_kernels(noise_cuda)
    assert kernels == set(SIGNATURES)
    assert {k.py_func.__name__ for k in noise_cuda.KERNELS} == kernels


@pytest.mark.parametrize("name, signature", [(n, s) for n, sigs in SIGNATURES.items() for s in sigs])
def test_cuda_kernel_compiles_to_ptx_for_hopper(hopper_without_gpu, name, signature):
    ptx = hopper_ptx(noise_cuda, name, signature)
    # correctly rounded division and square root, as the bit-for-bit argument in kernels/philox.py assumes
    assert "div.approx" not in ptx and "sqrt.approx" not in ptx


@pytest.mark.skipif(not cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_cuda_buffer_gets_the_cpu_stream_on_the_gpu():
    torch = pytest.importorskip("torch")
    from hpcsynth.kernels import clip_and_noise, gaussian_noise

    x = np.random.default_rng(3).standard_normal(1_000_003).astype(np.float32)
    on_gpu = torch.from_numpy(x).cuda()
    on_cpu = x.copy()
    assert clip_and_noise(on_gpu, 100.0, 0.5, 42, 1, 1000) == clip_and_noise(on_cpu, 100.0, 0.5, 42, 1, 1000)
    assert np.array_equal(on_gpu.cpu().numpy().view(np.uint32), on_cpu.view(np.uint32))
    noise = gaussian_noise(torch.empty(4097, device="cuda"), 1.0, 7, 0, 3)
    assert np.array_equal(noise.cpu().numpy(), gaussian_noise(np.empty(4097, np.float32), 1.0, 7, 0, 3))
