"""Reading checkpoints back for `hpcsynth run --resume`.

Every rank reads the same partial run file (rank 0 wrote it after the last finished round) and takes its own
row of parameters (or the shared row) and its own local state: optimiser moments, the training random stream
and its position in the shuffled pass. With those restored, a resumed run continues exactly as the
uninterrupted run would have, bit for bit on the CPU. A checkpoint written by a different job file is refused,
since continuing it would silently mix two experiments.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from hpcsynth.federated.records import RoundRecord
from hpcsynth.messages import ConfigError


@dataclass
class Checkpoint:
    """What one rank needs to continue: the last finished round, its parameters, its state, the history."""

    round: int
    params: np.ndarray
    local_state: bytes
    records: list[RoundRecord]


def pack_state(model_state: bytes, strategy_state: dict) -> bytes:
    """One site's checkpoint bytes: the model's local state and the strategy's (FedOpt's server moments)."""
    buffer = io.BytesIO()
    torch.save({"model": model_state, "strategy": strategy_state}, buffer)
    return buffer.getvalue()


def unpack_state(blob: bytes) -> tuple[bytes, dict]:
    """The two parts `pack_state` wrote, read without unpickling (tensors, bytes, numbers and dicts only)."""
    state = torch.load(io.BytesIO(blob), weights_only=True)
    return state["model"], state["strategy"]


def _same_job(f: h5py.File, path: Path, config_text: str) -> None:
    if f["config"][()].decode() != config_text:
        raise ConfigError(f"{path}: written by a different job file; remove it or run without --resume")


def load_checkpoint(path: str | Path, config_text: str, rank: int, site: int | None = None) -> Checkpoint | None:
    """This rank's checkpoint from a partial run file, or None when there is none to resume from: the parameters
    of its `site` (its rank when sites are one rank each) and its own local state."""
    p = Path(path)
    if not p.exists():
        return None
    with h5py.File(p, "r") as f:
        _same_job(f, p, config_text)
        ckpt = f["checkpoint"]
        params = ckpt["params"]
        row = params[0] if params.shape[0] == 1 else params[rank if site is None else site]
        records = [RoundRecord.from_row(r) for r in f["rounds"][()]]
        return Checkpoint(int(ckpt.attrs["round"]), np.array(row), ckpt[f"site_{rank}"][()].tobytes(), records)


def completed_scores(path: str | Path, config_text: str) -> dict[str, float] | None:
    """The scores of a finished run of the same job (so a resumed comparison skips it), else None."""
    p = Path(path)
    if not p.exists():
        return None
    with h5py.File(p, "r") as f:
        if f.attrs.get("status") != "complete" or "evaluation" not in f:
            return None
        _same_job(f, p, config_text)
        return {k: float(v) for k, v in f["evaluation"].attrs.items()}
