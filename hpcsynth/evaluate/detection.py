"""Detection: can a classifier tell synthetic rows from real ones? (a classifier two-sample test).

Lopez-Paz & Oquab (2017) turned two-sample testing into classification: train a classifier to separate the
two samples; if it cannot beat chance (AUROC 0.5) the samples are alike. SDMetrics' detection metrics and
SynthCity's `detection_xgb` do the same. Here: scikit-learn's histogram gradient boosting, real held-out rows
against as many synthetic rows drawn at random, AUROC of 3-fold out-of-fold predictions (0.5 is best).

Federated: each site tests its own held-out rows against the synthetic table and the AUROCs are averaged,
weighted by held-out rows (pooling real rows in one classifier is exactly what a site may not do). It differs from
the pooled figure both ways: a site's case mix is easier to tell from the consortium's synthetic table than
pooled rows would be, but the site's classifier learns from fewer rows.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.encoding import classifier, feature_matrix


def detection_auroc(synthetic: pd.DataFrame, real: pd.DataFrame, transformer: TableTransformer,
                    seed: int = 0, folds: int = 3) -> float:
    """Out-of-fold AUROC of a gradient-boosting classifier separating `real` from an equal synthetic sample."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    n = min(len(real), len(synthetic))
    if n < 2 * folds:
        return float("nan")
    rng = np.random.default_rng(seed)
    real_rows = real.iloc[rng.choice(len(real), n, replace=False)]
    syn_rows = synthetic.iloc[rng.choice(len(synthetic), n, replace=False)]
    x_real, categorical = feature_matrix(real_rows, transformer, transformer.columns)
    x_syn, _ = feature_matrix(syn_rows, transformer, transformer.columns)
    x, y = np.vstack([x_real, x_syn]), np.r_[np.zeros(n), np.ones(n)]
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    p = cross_val_predict(classifier(categorical, seed), x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))
