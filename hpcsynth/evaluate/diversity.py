"""Diversity and mode collapse: alpha-precision, beta-recall, authenticity (Alaa et al. 2022), rare categories.

The three scores of Alaa et al. (ICML 2022) in the space of `hpcsynth.evaluate.privacy.privacy_features`:
alpha-precision (synthetic rows where the real ones are dense), beta-recall (real rows the synthetic ones cover;
low is mode collapse), authenticity (synthetic rows that copy no patient). Real rows are the site's training
rows; across sites the scores are weighted by training rows. Rare-category coverage (do real levels under 5%
appear at all) comes from summed category counts and is exact. Definitions: docs/notes/evaluate.md.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hpcsynth.comm import Communicator
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform
from hpcsynth.evaluate.neighbours import NeighbourSearch
from hpcsynth.evaluate.pooling import summed

N_ALPHAS = 30
RARE_SHARE = 0.05


def _integrated(curve: np.ndarray, alphas: np.ndarray) -> float:
    return float(1.0 - np.abs(alphas - curve).sum() / alphas.sum())


def alpha_beta_authenticity(real: np.ndarray, synthetic: np.ndarray, n_alphas: int = N_ALPHAS) -> dict[str, float]:
    """alpha_precision, beta_recall and authenticity of feature matrices (rows = records)."""
    alphas = np.linspace(0.0, 1.0, n_alphas)
    real64, syn64 = real.astype(np.float64), synthetic.astype(np.float64)
    centre, syn_centre = real64.mean(axis=0), syn64.mean(axis=0)
    radii = np.quantile(np.linalg.norm(real64 - centre, axis=1), alphas)
    syn_to_centre = np.linalg.norm(syn64 - centre, axis=1)
    nearest = NeighbourSearch()
    real_to_real = nearest(real, real, k=1, exclude_self=True)[0][:, 0].astype(np.float64)
    d_rs, i_rs = nearest(real, synthetic, k=1)
    real_to_syn, real_to_syn_idx = d_rs[:, 0].astype(np.float64), i_rs[:, 0]
    closest_d = np.linalg.norm(syn64[real_to_syn_idx] - syn_centre, axis=1)
    closest_radii = np.quantile(closest_d, alphas)
    precision = np.array([np.mean(syn_to_centre <= r) for r in radii])
    recall = np.array([np.mean((real_to_syn <= real_to_real) & (closest_d <= r)) for r in closest_radii])
    d_sr, i_sr = nearest(synthetic, real, k=1)
    authentic = real_to_real[i_sr[:, 0]] < d_sr[:, 0].astype(np.float64)
    return {"alpha_precision": _integrated(precision, alphas), "beta_recall": _integrated(recall, alphas),
            "authenticity": float(authentic.mean())}


def category_counts(frame: pd.DataFrame, transformer: TableTransformer) -> np.ndarray:
    """Counts of every level (missing excluded) of every categorical column, concatenated: summable."""
    parts = [t.fit_stats(frame[t.spec.name])[:-1] for t in transformer.transforms_
             if isinstance(t, CategoricalTransform)]
    return np.concatenate(parts) if parts else np.empty(0)


def category_coverage(synthetic: pd.DataFrame, holdout: pd.DataFrame, transformer: TableTransformer,
                      comm: Communicator, rare_share: float = RARE_SHARE) -> dict[str, float]:
    """Share of real levels (and of rare real levels) that occur among the synthetic rows (collective, exact)."""
    real, syn = summed(category_counts(holdout, transformer), comm), category_counts(synthetic, transformer)
    shares, start = np.zeros_like(real), 0
    for t in transformer.transforms_:
        if isinstance(t, CategoricalTransform):
            block = real[start:start + len(t.labels_)]
            shares[start:start + len(t.labels_)] = block / max(block.sum(), 1.0)
            start += len(t.labels_)
    seen, rare = real > 0, (real > 0) & (shares < rare_share)
    covered = syn > 0
    return {"category_coverage": float(covered[seen].mean()) if seen.any() else float("nan"),
            "rare_category_coverage": float(covered[rare].mean()) if rare.any() else float("nan")}
