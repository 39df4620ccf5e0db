"""Distance to closest record (DCR): are synthetic rows closer to the training patients than new patients are?

Rows are compared in one shared space: numbers at their rank scale in [0, 1], categories one-hot scaled so that
a mismatch costs 1 (`privacy_features`); distances come from the exact nearest-neighbour kernels. Per site k:
the distance of every synthetic row, and of every held-out row of k, to the closest training row of k
(`hpcsynth.evaluate.attacks.site_distances`); only the distances travel (gathered on rank 0). If the synthetic
5th percentile is not below the held-out one, the generator places rows no nearer the training patients than
fresh patients lie (Zhao et al. 2021; SynthCity).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import NumericTransform
from hpcsynth.evaluate.neighbours import NeighbourSearch


def privacy_features(frame: pd.DataFrame, transformer: TableTransformer, exclude: tuple[str, ...] = ()) -> np.ndarray:
    """The shared distance space: rank-scaled numerics (continued linearly past the fitted range, so a value
    beyond the training extremes does not collapse onto them) and 1/sqrt(2)-scaled one-hot blocks; the columns
    in `exclude` are left out (an attacker who does not know them)."""
    blocks = []
    for t in transformer.transforms_:
        if t.spec.name in exclude:
            continue
        block = t.encode(frame[t.spec.name]) / np.sqrt(2.0)
        if isinstance(t, NumericTransform):
            x = pd.to_numeric(frame[t.spec.name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            beyond = np.nan_to_num(x - np.clip(x, t.min_, t.max_)) / max(t.max_ - t.min_, 1e-12)
            block[:, 0] = ndtr(block[:, 0] * np.sqrt(2.0)) + beyond
        blocks.append(block)
    return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)


def closest_distances(query: np.ndarray, reference: np.ndarray, nearest: NeighbourSearch | None = None) -> np.ndarray:
    """Distance of every query row to its closest reference row; pass `nearest` to reuse its device copies."""
    return (nearest or NeighbourSearch())(query, reference, k=1)[0][:, 0]


def dcr_scores(synthetic: np.ndarray, holdout: np.ndarray) -> dict[str, float]:
    """5th percentiles of the synthetic and held-out distances to the training rows, their ratio, and the share
    of synthetic rows that copy a training row (distance 0); without held-out distances, the synthetic ones only."""
    result = {"dcr_synthetic_p5": float(np.percentile(synthetic, 5)),
              "exact_match_rate": float(np.mean(synthetic == 0.0))}
    if holdout.size:
        result["dcr_holdout_p5"] = float(np.percentile(holdout, 5))
        result["dcr_ratio"] = result["dcr_synthetic_p5"] / max(result["dcr_holdout_p5"], 1e-12)
    return result
