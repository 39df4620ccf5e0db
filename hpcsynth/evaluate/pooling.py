"""How per-site results become consortium figures without moving rows.

Two ways; every score declares its own in `hpcsynth.evaluate.metrics`:

* **exact** (`summed`): the metric is a function of counts or sums (category counts, joint counts, moments,
  counts of events and patients at risk on a shared time grid). Each site computes its own, one `Allreduce`
  adds them, and the result equals the metric on the pooled rows.
* **site-weighted** (`weighted_mean`): the metric needs real rows together (a classifier two-sample test, a model
  trained on synthetic and tested on real, a Cox fit, nearest-neighbour distances). Each site computes it on its
  own held-out (or training) rows and the consortium figure is the mean weighted by the site's row count (not
  the pooled value: a detection AUROC averaged over sites is the one a site expects). Only scores and weights travel.
"""
from __future__ import annotations

import numpy as np

from hpcsynth.comm import Communicator


def summed(values: np.ndarray, comm: Communicator) -> np.ndarray:
    """Sum a float64 array of counts or sums over sites (collective)."""
    return comm.Allreduce(np.ascontiguousarray(values, dtype=np.float64).copy(), "sum")


def weighted_mean(scores: dict[str, float], weight: float, comm: Communicator) -> dict[str, float]:
    """The weight-averaged scores over sites (collective; every site passes the same keys in any order).

    A score a site could not compute (NaN, e.g. no events among its held-out rows) is left out of that key's
    average instead of poisoning it; a key no site could compute stays NaN."""
    keys = sorted(scores)
    values = np.array([scores[k] for k in keys], dtype=np.float64)
    present = np.isfinite(values)
    buffer = np.concatenate([np.where(present, values * weight, 0.0), np.where(present, weight, 0.0)])
    total = summed(buffer, comm)
    sums, weights = total[:len(keys)], total[len(keys):]
    return {k: float(s / w) if w > 0 else float("nan") for k, s, w in zip(keys, sums, weights)}
