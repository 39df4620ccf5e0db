"""Where a generator runs and in what precision, and the seeded random streams it draws from.

`resolve_device` maps `auto` to this rank's GPU or the CPU; `use_bf16` decides whether matrix products run in
bfloat16 (the weights, the exchanged buffer and the optimiser stay float32); `seeded_generator` gives a torch
generator keyed by (seed, site, purpose), so that sites and purposes draw independent streams from one seed.
"""
from __future__ import annotations

import numpy as np
import torch

PRECISIONS = ("auto", "bf16", "fp32")


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """`auto` is this rank's local GPU when CUDA is present (rank i on GPU i mod count), else the CPU."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def seeded_generator(seed: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator whose stream depends on the seed and the keys (site, purpose), independent of order."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & ((1 << 63) - 1))


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to train with bfloat16 matrix products (autocast). `auto`: where the hardware multiplies bfloat16
    natively (a CUDA GPU that supports it, or a CPU with AVX-512 BF16 / AMX, where small products run 4-10x
    faster than float32), else float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected auto, bf16 or fp32, got {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and torch.ops.mkldnn._is_mkldnn_bf16_supported())
