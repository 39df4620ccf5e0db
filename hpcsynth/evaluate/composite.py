"""Composite scores: Clinical Synthetic Fidelity (CSF) and Genomic Synthetic Fidelity (GSF), each in [0, 1].

D'Amico et al. (JCO Clinical Cancer Informatics 2023; the SAFE synthetic validation framework of the
GenoMed4All and Synthema consortia) summarise a synthetic MDS cohort by a clinical and a genomic fidelity; the
federated study of 4,427 patients reports CSF 0.942 and GSF 0.902 after five rounds. Their exact weighting is
not published with the figures, so hpcsynth defines both as plain means of parts that are each in [0, 1],
1 = indistinguishable from the real cohort, so the two can be read on the same scale:

    CSF = mean( shape score of the clinical columns           (1 - KS / 1 - TV, every non-gene column)
                pair-trend score among the clinical columns   (correlation / contingency similarity)
                1 - largest Kaplan-Meier gap, all patients
                1 - mean largest Kaplan-Meier gap over the risk groups
                share of key Cox hazard ratios whose synthetic value lies in the real 95% interval )
    GSF = mean( gene frequency similarity                     (Bray-Curtis: 1 - sum|f_r - f_s| / sum(f_r + f_s))
                pair-trend score among the genes              (contingency similarity of every gene pair)
                co-mutation agreement                         (pairs significant in real data, Fisher p < 0.05,
                                                               whose synthetic log odds ratio has the same sign) )
A part that cannot be computed (no survival columns, no genes) is left out of the mean; with no part the
score is NaN.
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
