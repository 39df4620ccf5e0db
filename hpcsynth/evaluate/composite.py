"""Composite scores: Clinical Synthetic Fidelity (CSF) and Genomic Synthetic Fidelity (GSF), each in [0, 1].

After D'Amico et al. (JCO CCI 2023), whose weighting is unpublished, both are plain means of parts in [0, 1]
(1 = indistinguishable from the real cohort):
    CSF = mean(clinical shapes, clinical pair trends, 1 - KM gap, 1 - mean risk-group KM gap, Cox HRs in CI)
    GSF = mean(gene frequency similarity, gene pair trends, co-mutation agreement)
A part that cannot be computed (no survival columns, no genes) is left out; with no part the score is NaN.
The parts are defined in docs/notes/evaluate.md.
"""
from __future__ import annotations

import numpy as np


def _mean(parts: list[float]) -> float:
    finite = [p for p in parts if p is not None and np.isfinite(p)]
    return float(np.clip(np.mean(finite), 0.0, 1.0)) if finite else float("nan")


def csf(clinical_shape: float, clinical_pairs: float, km_gap: float, km_group_gap: float,
        cox_in_ci: float) -> float:
    """Clinical Synthetic Fidelity from its five parts (see the module docstring)."""
    return _mean([clinical_shape, clinical_pairs, 1.0 - km_gap, 1.0 - km_group_gap, cox_in_ci])


def gsf(frequency_similarity: float, gene_pairs: float, co_mutation_agreement: float) -> float:
    """Genomic Synthetic Fidelity from its three parts (see the module docstring)."""
    return _mean([frequency_similarity, gene_pairs, co_mutation_agreement])
