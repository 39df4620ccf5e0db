"""Gaussian noise for DP-SGD, 16M float32 values: hpcsynth's counter-based Philox kernel (CPU, all Numba threads)
against ``numpy.random.Generator(Philox).standard_normal`` (one thread) and ``torch.randn`` (its threads).

Also times the fused clip-by-global-norm plus noise on the same buffer (two passes: the norm, then the update).
Repeats go round the methods in turn and each keeps its best time. The last line is the ratio of hpcsynth's
time to numpy's.

    python benchmarks/noise.py [--size 16777216] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 24)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch
    from numba import get_num_threads

    from hpcsynth.kernels import clip_and_noise, gaussian_noise

    n = args.size
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {platform.processor() or platform.machine()}  "
          f"{os.cpu_count()} CPUs  numba threads {get_num_threads()}  torch threads {torch.get_num_threads()}  "
          f"load average {os.getloadavg()[0]:.1f}")
    out = np.empty(n, np.float32)
    buffer = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    generator = np.random.Generator(np.random.Philox(0))
    torch.manual_seed(0)
    gaussian_noise(out[:8], 1.0, 0, 0, 0)  # compile outside the timings
    clip_and_noise(buffer[:8].copy(), 1.0, 1.0, 0, 0, 0)
    step = iter(range(1 << 30))
    methods: dict[str, Callable[[], object]] = {
        "hpcsynth-philox": lambda: gaussian_noise(out, 1.0, 0, 0, next(step)),
        "numpy-philox": lambda: generator.standard_normal(n, dtype=np.float32),
        "torch-randn": lambda: torch.randn(n),
        "hpcsynth-clip+noise": lambda: clip_and_noise(buffer, 1.0, 1e-3, 0, 0, next(step)),
    }
    seconds = {name: np.inf for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            t = time.perf_counter()
            fn()
            seconds[name] = min(seconds[name], time.perf_counter() - t)
    print(f"{'method':<22} {'seconds':>8} {'M values/s':>11}")
    for name, s in seconds.items():
        print(f"{name:<22} {s:>8.4f} {n / s / 1e6:>11.1f}")
    ratio = seconds["hpcsynth-philox"] / seconds["numpy-philox"]
    print(f"ratio to numpy (hpcsynth Philox time / numpy Generator(Philox).standard_normal time, {n} float32): "
          f"{ratio:.2f}")


if __name__ == "__main__":
    main()
