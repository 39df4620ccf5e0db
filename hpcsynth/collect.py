"""Merge run files into one table: one row per run, with its configuration, timings and scores.

Job arrays and scaling studies leave one run file per task; this is how they become one table (pandas), to
compare strategies or plot scaling. It reads only what every run file has (root attributes, `/config`,
`/rounds`, `/evaluation`), so partial files (checkpoints of unfinished runs) appear too, marked by `status`.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import yaml


def read_run(path: str | Path) -> dict[str, Any]:
    """One row: file, status, strategy, sites, seed, model, rounds done, mean per-round timings, scores."""
    with h5py.File(path, "r") as f:
        attrs = f.attrs
        config = yaml.safe_load(f["config"][()].decode() if "config" in f else "") or {}
        row = {"file": str(path), "status": str(attrs.get("status", "")), "strategy": str(attrs.get("strategy", "")),
               "n_sites": int(attrs.get("n_sites", 0)), "seed": config.get("seed", 0),
               "model": (config.get("model") or {}).get("name", "tvae"),
               "n_patients": (config.get("data") or {}).get("n_patients")}
        rounds = f["rounds"][()] if "rounds" in f else np.zeros(0, dtype=[("wall_s", "f8")])
        row["rounds"] = len(rounds)
        for name in ("wall_s", "compute_s", "comm_s", "bytes_reduced"):
            row[f"round_{name}"] = float(np.mean(rounds[name])) if len(rounds) else float("nan")
        if "evaluation" in f:
            row.update({k: float(v) for k, v in f["evaluation"].attrs.items()})
    return row


def collect(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The rows of `read_run` for every path, in the given order (comparison files are skipped: their runs
    have their own files)."""
    rows = []
    for path in paths:
        with h5py.File(path, "r") as f:
            if f.attrs.get("kind") == "comparison":
                continue
        rows.append(read_run(path))
    return pd.DataFrame(rows)
