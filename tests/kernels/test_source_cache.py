"""A kernel cached with its other source files in the key: loaded from disk in the next process, compiled again
once one of those files changes."""
import os
import subprocess
import sys

MODULE = """
from pathlib import Path
from numba import njit
from hpcsynth.kernels.source_cache import cache_with_sources

@njit
def plus_one(x):
    return x + 1

cache_with_sources(plus_one, Path(__file__).with_name("generator.py"))
print(plus_one(1), sum(plus_one.stats.cache_hits.values()))
"""


def run_kernel(folder) -> str:
    """Import the kernel's module in a new process: (result, cache hits)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(folder / "cache"), "PYTHONPATH": str(folder)}
    done = subprocess.run([sys.executable, "-c", "import kernel_module"], env=env, capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


def test_the_cache_is_reused_until_another_source_file_changes(tmp_path):
    (tmp_path / "kernel_module.py").write_text(MODULE)
    (tmp_path / "generator.py").write_text("A = 1\n")
    assert run_kernel(tmp_path) == "2 0"  # compiled
    assert run_kernel(tmp_path) == "2 1"  # loaded from the cache
    (tmp_path / "generator.py").write_text("A = 2\n")
    assert run_kernel(tmp_path) == "2 0"  # the other file changed: compiled again
    assert run_kernel(tmp_path) == "2 1"


NOISE = """
import numpy as np
from hpcsynth.kernels import gaussian_noise
from hpcsynth.kernels.noise_cpu import scale_and_noise_cpu

gaussian_noise(np.empty(10, np.float32), 1.0, 0, 0, 0)
print(sum(scale_and_noise_cpu.stats.cache_hits.values()))
"""


def test_the_dp_noise_kernel_compiles_once_not_in_every_process(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    hits = [subprocess.run([sys.executable, "-c", NOISE], env=env, capture_output=True, text=True,
                           check=True).stdout.strip() for _ in range(2)]
    assert hits == ["0", "1"]
