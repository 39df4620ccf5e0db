"""Site partitioners: split one cohort into simulated hospitals that differ the way hospitals differ.

Studies of federated strategies need heterogeneity on purpose. Each partitioner maps every row of the table to a
site, reproducibly from the seed, so every rank computes the same map and keeps only its own rows:
    iid        rows dealt at random into equal sites (the control)
    dirichlet  label skew (Hsu et al. 2019): for every class of `column`, the shares of its rows across sites
               are drawn from Dirichlet(alpha); small alpha gives sites dominated by few classes
    covariate  covariate shift: site k holds the rows in the k-th quantile band of `column` (for example age:
               the youngest patients at site 0), as referral patterns separate hospitals
    quantity   quantity skew: site sizes drawn from Dirichlet(alpha), rows otherwise random
Every site keeps at least one row (the draw is repeated, then the largest site gives rows, if needed).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpcsynth.data.schema import DataError

KINDS = ("iid", "dirichlet", "covariate", "quantity")


@dataclass
class Partition:
    kind: str
    n_sites: int
    column: str | None = None
    alpha: float = 0.5
    seed: int = 0


def _ensure_nonempty(sites: np.ndarray, n_sites: int, rng: np.random.Generator) -> np.ndarray:
    """Move single rows from the largest site to each empty one."""
    for empty in np.flatnonzero(np.bincount(sites, minlength=n_sites) == 0):
        largest = np.argmax(np.bincount(sites, minlength=n_sites))
        sites[rng.choice(np.flatnonzero(sites == largest))] = empty
    return sites


def _iid(frame: pd.DataFrame, p: Partition, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(len(frame)) % p.n_sites)


def _quantity(frame: pd.DataFrame, p: Partition, rng: np.random.Generator) -> np.ndarray:
    shares = rng.dirichlet(np.full(p.n_sites, p.alpha))
    return rng.choice(p.n_sites, size=len(frame), p=shares)


def _dirichlet(frame: pd.DataFrame, p: Partition, rng: np.random.Generator) -> np.ndarray:
    labels = frame[p.column].astype(str).where(frame[p.column].notna(), "<missing>").to_numpy()
    sites = np.empty(len(frame), dtype=np.int64)
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        shares = rng.dirichlet(np.full(p.n_sites, p.alpha))
        cuts = (np.cumsum(shares)[:-1] * rows.size).round().astype(int)
        for site, part in enumerate(np.split(rows, cuts)):
            sites[part] = site
    return sites


def _covariate(frame: pd.DataFrame, p: Partition, rng: np.random.Generator) -> np.ndarray:
    values = pd.to_numeric(frame[p.column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if np.isnan(values).all():
        raise DataError(f"data.partition.column: {p.column!r} has no numeric values to split by")
    jitter = rng.random(len(values)) * 1e-9  # breaks ties between equal values at random
    order = np.argsort(np.where(np.isnan(values), np.nanmedian(values), values) + jitter, kind="stable")
    sites = np.empty(len(values), dtype=np.int64)
    for site, part in enumerate(np.array_split(order, p.n_sites)):
        sites[part] = site
    return sites


_SPLITTERS = {"iid": _iid, "quantity": _quantity, "dirichlet": _dirichlet, "covariate": _covariate}


def assign_sites(frame: pd.DataFrame, p: Partition) -> np.ndarray:
    """The site of every row (int64, values 0..n_sites-1), the same on every rank for the same seed."""
    if p.kind not in _SPLITTERS:
        raise DataError(f"data.partition.kind: unknown partitioner {p.kind!r} (known: {', '.join(KINDS)})")
    if p.kind in ("dirichlet", "covariate") and p.column not in frame.columns:
        known = ", ".join(map(str, frame.columns))
        raise DataError(f"data.partition.column: {p.column!r} not found (columns: {known})")
    if len(frame) < p.n_sites:
        raise DataError(f"data.partition: {len(frame)} rows cannot fill {p.n_sites} sites")
    rng = np.random.default_rng([p.seed, 11])
    return _ensure_nonempty(_SPLITTERS[p.kind](frame, p, rng).astype(np.int64), p.n_sites, rng)
