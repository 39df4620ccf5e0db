"""Trajectory-level detection: can a classifier tell synthetic patients from real ones by their whole sequence?

The classifier two-sample test of `hpcsynth.evaluate.detection`, with the same classifier and settings
(gradient-boosted trees, `ITERATIONS` trees at `LEARNING_RATE`, 3 stratified folds, as many synthetic patients
drawn as there are real ones, AUROC of the out-of-fold predictions; 0.5 is best), on one row per patient: the
fixed-length summary of `hpcsynth.evaluate.trajectories.summary` (context, length, interval statistics, per lab
first, last, mean, spread, slope and missing share). A release whose visits look right one by one but whose
patients do not (no dynamics, wrong lengths, wrong spacing) is caught here and not by per-visit scores.

Federated as detection is: each site tests its own held-out patients against the release and the AUROCs are
averaged, weighted by held-out patients.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.data.sequences import Sequences
from hpcsynth.evaluate.detection import ITERATIONS, LEARNING_RATE
from hpcsynth.evaluate.encoding import classifier
from hpcsynth.evaluate.pooling import weighted_mean
from hpcsynth.evaluate.trajectories import categorical_context, summary


def coded_summaries(frames: list[Sequences], labs: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """(one matrix per Sequences, the categorical mask): `summary` rows with the categorical context as codes
    shared by all `frames` (missing as the last code) and the numbers as they are (NaN kept)."""
    tables = [summary(f, labs) for f in frames]
    categorical = categorical_context(frames[0])
    for column in categorical:
        levels = sorted({str(v) for t in tables for v in t[column].dropna()})
        for t in tables:
            codes = pd.Categorical(t[column].astype("string"), categories=levels).codes
            t[column] = np.where(codes < 0, len(levels), codes)
    mask = np.array([c in categorical for c in tables[0].columns])
    return [t.to_numpy(dtype=np.float64, na_value=np.nan) for t in tables], mask


def site_detection(real: Sequences, synthetic: Sequences, labs: list[str], seed: int = 0, folds: int = 3) -> float:
    """Out-of-fold AUROC of real patients against as many synthetic ones (NaN with fewer than `2 * folds` of
    either)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    n = min(real.n_patients, synthetic.n_patients)
    if n < 2 * folds:
        return float("nan")
    (x_real, x_syn), categorical = coded_summaries([real, synthetic], labs)
    rng = np.random.default_rng(seed)
    x = np.vstack([x_real[rng.choice(len(x_real), n, replace=False)], x_syn[rng.choice(len(x_syn), n, replace=False)]])
    y = np.r_[np.zeros(n), np.ones(n)]
    p = np.empty(2 * n)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        # 20 rows per leaf, fewer where a fold has under 80 rows: a site of 25 held-out patients could not split
        # at all and scored every release at chance
        leaf = min(20, max(5, len(train) // 4))
        model = classifier(categorical, seed, ITERATIONS, LEARNING_RATE, leaf).fit(x[train], y[train])
        p[test] = model.predict_proba(x[test])[:, 1]
    return float(roc_auc_score(y, p))


def trajectory_detection(real: Sequences, synthetic: Sequences, labs: list[str], comm: Communicator | None = None,
                         seed: int = 0) -> float:
    """The detection AUROC on whole trajectories, averaged over sites weighted by held-out patients (collective)."""
    mine = {"trajectory_detection_auroc": site_detection(real, synthetic, labs, seed)}
    return weighted_mean(mine, real.n_patients, comm or SoloComm())["trajectory_detection_auroc"]
