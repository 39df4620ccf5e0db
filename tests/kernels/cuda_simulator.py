"""Run CUDA kernel checks in Numba's CUDA simulator, in a child process: the simulator must be switched on before
Numba is imported, and must not leak into the CPU tests of the same pytest process."""
import os
import subprocess
import sys
from pathlib import Path


def run_simulated(checks: str) -> None:
    """Execute `checks` (Python source that prints SIMULATED OK at its end) under NUMBA_ENABLE_CUDASIM=1."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", checks], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "SIMULATED OK" in done.stdout, done.stdout + done.stderr


def cuda_kernels(module) -> set[str]:
    """The names of `module`'s CUDA kernels (dispatchers that are not device functions)."""
    import inspect

    return {name for name, obj in inspect.getmembers(module)
            if type(obj).__name__ == "CUDADispatcher" and not obj.targetoptions.get("device")}


def hopper_ptx(module, name: str, signature) -> str:
    """PTX of `module.name` for `signature`, compiled for Hopper (cc 9.0) without a GPU."""
    from numba import cuda

    ptx, _ = cuda.compile_ptx(getattr(module, name).py_func, signature, cc=(9, 0))
    assert ".target sm_90" in ptx
    return ptx
