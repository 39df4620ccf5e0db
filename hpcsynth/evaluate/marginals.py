"""Marginal distributions for the report's plots, from counts so the held-out rows stay on their sites.

Numbers are counted on 30 equal bins over the shared transform's range (values outside go to the end bins),
categories on the shared levels plus missing; one `Allreduce` sums the real counts of every site.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpcsynth.comm import Communicator
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform
from hpcsynth.evaluate.pooling import summed

N_BINS = 30


@dataclass
class Marginal:
    """One column's histogram, real against synthetic.

    Parameters
    ----------
    name : str
        The column.
    edges : ndarray or None
        Bin edges of a numeric column (None for categories).
    labels : list of str or None
        Level labels of a categorical column, "missing" last (None for numbers).
    real, synthetic : ndarray
        Counts per bin or level (real: summed over sites).
    """

    name: str
    edges: np.ndarray | None
    labels: list[str] | None
    real: np.ndarray
    synthetic: np.ndarray


def _counts(frame: pd.DataFrame, transformer: TableTransformer) -> tuple[np.ndarray, list]:
    parts, layout = [], []
    for t in transformer.transforms_:
        values = frame[t.spec.name]
        if isinstance(t, CategoricalTransform):
            parts.append(t.fit_stats(values))
            layout.append((t.spec.name, None, [str(v) for v in t.labels_] + ["missing"]))
        else:
            edges = np.linspace(t.min_, t.max_, N_BINS + 1) if t.max_ > t.min_ else \
                np.array([t.min_ - 0.5, t.min_ + 0.5])
            x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            x = np.clip(x[np.isfinite(x)], edges[0], edges[-1])
            parts.append(np.histogram(x, bins=edges)[0].astype(np.float64))
            layout.append((t.spec.name, edges, None))
    return np.concatenate(parts), layout


def marginals(synthetic: pd.DataFrame, holdout: pd.DataFrame, transformer: TableTransformer,
              comm: Communicator) -> list[Marginal]:
    """Every column's real (summed over sites) and synthetic counts (collective)."""
    real, layout = _counts(holdout, transformer)
    real = summed(real, comm)
    syn, _ = _counts(synthetic, transformer)
    out, start = [], 0
    for name, edges, labels in layout:
        size = len(labels) if labels is not None else len(edges) - 1
        out.append(Marginal(name, edges, labels, real[start:start + size], syn[start:start + size]))
        start += size
    return out
