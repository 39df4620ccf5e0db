"""Genomic fidelity: mutation frequencies and pairwise co-occurrence / mutual exclusivity, real against synthetic.

Driver mutations in MDS are not independent: the splicing genes SF3B1, SRSF2, U2AF1 and ZRSR2 exclude each other
and SRSF2 travels with TET2, ASXL1, RUNX1 and IDH2 (Papaemmanuil et al. 2013). A synthetic cohort that keeps the
frequencies but loses that structure would mislead any co-mutation study. Per pair of genes the association is
the log odds ratio of the 2x2 table over the patients tested for both genes (Haldane's +0.5 on every cell, so
a never-seen combination is finite); its sign says co-occurrence (> 0) or mutual exclusivity (< 0), and
Fisher's exact test on the real table says whether the real association is significant.

Everything here is a count (patients tested, mutated, and the four cells of every 2x2 table), so each site
counts its own rows and one `Allreduce` gives the pooled figures exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact

from hpcsynth.comm import Communicator
from hpcsynth.evaluate.pooling import summed


@dataclass
class GenomicComparison:
    """Mutation frequencies and co-mutation log odds ratios, real (pooled over sites) against synthetic.

    Parameters
    ----------
    genes : list of str
        The genes compared.
    real_freq, synthetic_freq : ndarray
        The share of tested patients mutated in each gene.
    pairs : list of (str, str)
        Every pair of genes, in the order of the log odds ratios.
    real_log_or, synthetic_log_or : ndarray
        Log odds ratio of co-mutation of every pair (> 0 co-occurrence, < 0 exclusivity).
    real_p : ndarray
        Fisher's exact p-value of every pair in the real rows.
    """

    genes: list[str]
    real_freq: np.ndarray
    synthetic_freq: np.ndarray
    pairs: list[tuple[str, str]]
    real_log_or: np.ndarray
    synthetic_log_or: np.ndarray
    real_p: np.ndarray

    def scores(self, alpha: float = 0.05) -> dict[str, float]:
        """frequency_similarity: Bray-Curtis similarity of the frequency profiles, 1 - sum|f_r - f_s| / sum(f_r +
        f_s) in [0, 1]; association_agreement: share of the pairs significant in real data (Fisher p < alpha)
        whose synthetic log odds ratio has the same sign; log_or_mae over those pairs."""
        total = float((self.real_freq + self.synthetic_freq).sum())
        freq = 1.0 - float(np.abs(self.real_freq - self.synthetic_freq).sum()) / total if total > 0 else 1.0
        significant = self.real_p < alpha
        if significant.any():
            same = np.sign(self.real_log_or[significant]) == np.sign(self.synthetic_log_or[significant])
            agreement = float(same.mean())
            mae = float(np.abs(self.real_log_or - self.synthetic_log_or)[significant].mean())
        else:
            agreement, mae = float("nan"), float("nan")
        return {"gene_frequency_similarity": freq,
                "gene_frequency_mae": float(np.abs(self.real_freq - self.synthetic_freq).mean()),
                "co_mutation_agreement": agreement, "co_mutation_log_or_mae": mae}


def _flags(frame: pd.DataFrame, genes: list[str]) -> np.ndarray:
    return np.column_stack([pd.to_numeric(frame[g], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                            for g in genes])


def mutation_counts(frame: pd.DataFrame, genes: list[str]) -> np.ndarray:
    """[tested, mutated] per gene, then the 2x2 cells (n11, n10, n01, n00) per pair: summable over sites."""
    x = _flags(frame, genes)
    tested, mutated = np.isfinite(x), np.nan_to_num(x) > 0.5
    single = np.concatenate([tested.sum(axis=0), mutated.sum(axis=0)])
    cells = []
    for i, j in combinations(range(len(genes)), 2):
        both = tested[:, i] & tested[:, j]
        a, b = mutated[both, i], mutated[both, j]
        cells += [np.sum(a & b), np.sum(a & ~b), np.sum(~a & b), np.sum(~a & ~b)]
    return np.concatenate([single, np.asarray(cells)]).astype(np.float64)


def log_odds_ratio(cells: np.ndarray) -> np.ndarray:
    """Haldane-corrected log odds ratio of (n11, n10, n01, n00) rows."""
    n11, n10, n01, n00 = (cells + 0.5).T
    return np.log(n11 * n00 / (n10 * n01))


def _split(counts: np.ndarray, n_genes: int) -> tuple[np.ndarray, np.ndarray]:
    tested, mutated = counts[:n_genes], counts[n_genes:2 * n_genes]
    return mutated / np.maximum(tested, 1.0), counts[2 * n_genes:].reshape(-1, 4)


def pooled_real_genomics(holdout: pd.DataFrame, genes: list[str],
                         comm: Communicator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frequencies, log odds ratios, Fisher p-values) of the pooled held-out rows, exact from summed counts
    (collective)."""
    freq, cells = _split(summed(mutation_counts(holdout, genes), comm), len(genes))
    p = np.array([fisher_exact(c.reshape(2, 2))[1] for c in cells]) if len(cells) else np.empty(0)
    return freq, log_odds_ratio(cells), p


def compare_genomics(synthetic: pd.DataFrame, holdout: pd.DataFrame, genes: list[str], comm: Communicator,
                     real: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> GenomicComparison:
    """Frequencies and pairwise log odds ratios of the pooled held-out rows (exact, collective unless `real`, the
    result of `pooled_real_genomics`, is given) and of the synthetic table."""
    real_freq, real_log_or, p = real if real is not None else pooled_real_genomics(holdout, genes, comm)
    syn_freq, syn_cells = _split(mutation_counts(synthetic, genes), len(genes))
    return GenomicComparison(genes, real_freq, syn_freq, list(combinations(genes, 2)), real_log_or,
                             log_odds_ratio(syn_cells), p)
