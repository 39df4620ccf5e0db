"""Fairness: is the synthetic table as faithful and as useful for every group of patients?

A generator can match the cohort on average while misrepresenting women, the oldest patients or one hospital;
a model trained on its rows then serves those patients worst. Per subgroup (each sex, age bands <60, 60-69,
70-79, >=80, and each site) this module scores fidelity (the mean column shape score of the synthetic rows of
the subgroup against the real held-out rows of the subgroup; exact from summed counts, like
`hpcsynth.evaluate.fidelity`) and utility (the AUROC, on the subgroup's held-out rows, of the TSTR model trained
on all synthetic rows; averaged over sites weighted by rows). The site subgroup compares the whole synthetic
table with that site's held-out rows: how well the consortium's release represents each hospital. The worst
subgroup is named, and the gap between best and worst is the score.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hpcsynth.comm import Communicator
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.fidelity import column_scores
from hpcsynth.evaluate.pooling import weighted_mean

AGE_BANDS = ((None, 60, "age<60"), (60, 70, "age 60-69"), (70, 80, "age 70-79"), (80, None, "age>=80"))


def subgroups(frame: pd.DataFrame, sex: str | None, age: str | None, levels: list[str]) -> dict[str, np.ndarray]:
    """Boolean masks of every subgroup (sex levels given in the shared order, so every site has the same keys)."""
    masks = {}
    if sex is not None:
        values = frame[sex].astype(object).to_numpy()
        masks.update({f"{sex}={level}": values == level for level in levels})
    if age is not None:
        x = pd.to_numeric(frame[age], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        for low, high, name in AGE_BANDS:
            masks[name] = np.isfinite(x) & (x >= (low if low is not None else -np.inf)) & \
                (x < (high if high is not None else np.inf))
    return masks


@dataclass
class FairnessTable:
    """Fidelity and utility per subgroup (each sex, age band and site).

    Parameters
    ----------
    fidelity : dict of str to float
        Mean column shape score of the subgroup's synthetic rows against its real held-out rows.
    utility : dict of str to float
        AUROC of the TSTR model on the subgroup's held-out rows (site-weighted).
    rows : dict of str to float
        The subgroup's real held-out rows, over all sites.
    """

    fidelity: dict[str, float] = field(default_factory=dict)
    utility: dict[str, float] = field(default_factory=dict)
    rows: dict[str, float] = field(default_factory=dict)

    def scores(self) -> tuple[dict[str, float], dict[str, str]]:
        """Scores (the worst value and the best-worst gap of each) and the names of the worst subgroups."""
        scores, notes = {}, {}
        for kind, table in (("fidelity", self.fidelity), ("utility", self.utility)):
            finite = {k: v for k, v in table.items() if np.isfinite(v)}
            if not finite:
                continue
            worst = min(finite, key=finite.get)
            scores[f"fairness_{kind}_min"] = finite[worst]
            scores[f"fairness_{kind}_gap"] = max(finite.values()) - finite[worst]
            notes[f"fairness_{kind}_worst"] = worst
        return scores, notes


def _auroc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if np.unique(y).size == 2 else float("nan")


def fairness(synthetic: pd.DataFrame, holdout: pd.DataFrame, transformer: TableTransformer, comm: Communicator,
             sex: str | None, age: str | None, site: np.ndarray, n_sites: int,
             predictions: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> FairnessTable:
    """The subgroup table (collective). `site`: the site of every held-out row (one process may hold several
    sites' rows; under MPI it is the rank's own). `predictions`: (mask of the held-out rows scored, their binary
    labels, positive-class scores) of the TSTR model."""
    levels = list(transformer.transform_of(sex).labels_) if sex is not None else []
    real_masks, syn_masks = subgroups(holdout, sex, age, levels), subgroups(synthetic, sex, age, levels)
    if n_sites > 1:
        everyone = np.ones(len(synthetic), dtype=bool)
        for k in range(n_sites):
            real_masks[f"site {k}"], syn_masks[f"site {k}"] = site == k, everyone
    table = FairnessTable()
    for name, mask in real_masks.items():
        shapes = column_scores(synthetic[syn_masks[name]], holdout[mask], transformer, comm)
        table.fidelity[name] = float(np.mean(list(shapes.values())))
        table.rows[name] = float(comm.Allreduce(np.array([mask.sum()], dtype=np.float64), "sum")[0])
    local = {name: float("nan") for name in real_masks}
    if predictions is not None:
        kept, y, p = predictions
        local.update({name: _auroc(y[mask[kept]], p[mask[kept]]) for name, mask in real_masks.items()})
    table.utility.update(weighted_mean(local, float(len(holdout)), comm))
    return table
