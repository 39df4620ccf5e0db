"""Shift diagnostics: how far each site's distribution is from the pooled one, from merged statistics only.

Before choosing a strategy a consortium wants to know how much its hospitals differ. Each site histograms its
own rows on the shared transform's grid: numeric columns on 20 bins of equal pooled probability (the shared
quantile transform maps the pooled distribution to a standard normal, so its 20 quantile bands hold 5% each),
categorical columns on the shared levels; missing values are a bin of their own. Only these counts are
gathered. For every site and column the Jensen-Shannon distance (base 2, in [0, 1]) between the site's
histogram and the pooled histogram measures the shift; the label (data.target, or the survival event) gives the
label skew, and the site sizes the quantity skew.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.special import ndtri

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform

BINS = 20
STRONG, MODERATE = 0.3, 0.15


def column_counts(frame: pd.DataFrame, transformer: TableTransformer) -> list[np.ndarray]:
    """This site's histogram of every column on the shared grid (the only thing a site sends)."""
    edges = ndtri(np.linspace(0, 1, BINS + 1)[1:-1])
    counts = []
    for t in transformer.transforms_:
        if isinstance(t, CategoricalTransform):
            counts.append(t.fit_stats(frame[t.spec.name]))
            continue
        block = t.encode(frame[t.spec.name])
        present = block[:, 1] > 0.5 if block.shape[1] > 1 else np.ones(len(block), bool)
        hist = np.bincount(np.searchsorted(edges, block[present, 0]), minlength=BINS).astype(float)
        counts.append(np.append(hist, (~present).sum()))
    return counts


@dataclass
class ShiftReport:
    """Per site and column the JS distance to the pooled distribution, the label skew, sizes and a reading."""

    columns: list[str]
    divergence: np.ndarray
    sizes: np.ndarray
    label: str | None
    label_skew: np.ndarray
    unrecorded: np.ndarray

    @classmethod
    def from_counts(cls, columns: list[str], site_counts: list[list[np.ndarray]], label: str | None) -> ShiftReport:
        n_sites = len(site_counts)
        divergence = np.zeros((n_sites, len(columns)))
        unrecorded = np.array([[c[-1] == c.sum() > 0 and c.size > 1 for c in site] for site in site_counts])
        for j in range(len(columns)):
            pooled = sum(site[j] for site in site_counts)
            for k, site in enumerate(site_counts):
                divergence[k, j] = jensenshannon(site[j], pooled, base=2) if site[j].sum() else 1.0
        sizes = np.array([site_counts[k][0].sum() for k in range(n_sites)])
        skew = divergence[:, columns.index(label)] if label in columns else np.zeros(n_sites)
        return cls(columns, np.nan_to_num(divergence), sizes, label, skew, unrecorded)

    def table(self) -> pd.DataFrame:
        """One row per site: size, share, label skew and the most shifted column."""
        worst = self.divergence.argmax(axis=1)
        return pd.DataFrame({
            "site": np.arange(len(self.sizes)), "rows": self.sizes.astype(int),
            "share": self.sizes / self.sizes.sum(), "label_skew": self.label_skew,
            "most_shifted": [self.columns[j] for j in worst], "js": self.divergence.max(axis=1),
            "unrecorded": self.unrecorded.sum(axis=1),
            "mean_js": self.divergence.mean(axis=1)})

    def reading(self) -> str:
        """One line: the strongest shift and what it means for the choice of strategy. Columns a site never
        records (a gene its panel does not test) are named apart: that is a form difference, not a shift."""
        recorded = np.where(self.unrecorded, -1.0, self.divergence)
        k, j = np.unravel_index(recorded.argmax(), recorded.shape)
        js = self.divergence[k, j]
        sizes = f"sizes vary {self.sizes.max() / max(self.sizes.min(), 1):.1f}-fold"
        if self.unrecorded.any():
            n = int(self.unrecorded.any(axis=0).sum())
            sizes += f", {n} columns not recorded at some sites"
        if js >= STRONG:
            return (f"strong covariate shift on {self.columns[j]} (JS {js:.2f} at site {k}), {sizes}: plain FedAvg "
                    f"averages sites that disagree; check it against centralized and isolated")
        if js >= MODERATE:
            return (f"moderate shift on {self.columns[j]} (JS {js:.2f} at site {k}), {sizes}: FedAvg should cope; "
                    f"more rounds with fewer local epochs limit drift")
        return f"sites are alike (largest JS {js:.2f}, {self.columns[j]} at site {k}), {sizes}: FedAvg suits them"

    def attrs(self) -> dict:
        """The report as run-file attributes (of /shift)."""
        return {"columns": self.columns, "sizes": self.sizes.tolist(), "label": self.label or "",
                "label_skew": self.label_skew.tolist(), "unrecorded": self.unrecorded.astype(int).tolist(),
                "reading": self.reading()}
