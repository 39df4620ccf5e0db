"""Detection: can a classifier tell synthetic rows from real ones? (a classifier two-sample test).

Lopez-Paz & Oquab (2017) turned two-sample testing into classification: train a classifier to separate the
two samples; if it cannot beat chance (AUROC 0.5) the samples are alike. SDMetrics' detection metrics and
SynthCity's `detection_xgb` do the same. Here: gradient-boosted trees (`encoding.BoostedTrees`: 20 trees of 15
leaves at learning rate 0.3; categories of more than two levels split as categories, two-level ones as their 0/1
codes), real held-out rows against as many synthetic rows drawn at random, AUROC of 3-fold out-of-fold
predictions (0.5 is best). Twenty trees at 0.3 go as far as the utility classifier's 60 at 0.1 for a third of
the cost; docs/evaluation.md compares the two on the demo's releases.
Which columns give the synthetic rows away comes from the same fitted folds: the permutation importance of each
column on the held-out fold (Breiman 2001; scikit-learn's `permutation_importance`), in AUROC points.

Federated: each site tests its own held-out rows against the synthetic table and the AUROCs are averaged,
weighted by held-out rows (pooling real rows in one classifier is exactly what a site may not do). It differs from
the pooled figure both ways: a site's case mix is easier to tell from the consortium's synthetic table than
pooled rows would be, but the site's classifier learns from fewer rows. The importances pool the same way, column
by column (every site returns the same keys, the shared transform's columns).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.encoding import classifier, feature_matrix, two_level

ITERATIONS, LEARNING_RATE = 20, 0.3  # the classifier's boosting: as far in total as 60 steps of 0.1


@dataclass(frozen=True)
class Detection:
    """The classifier two-sample test of one synthetic table against one set of real rows.

    Parameters
    ----------
    auroc : float
        Out-of-fold AUROC of real against synthetic (0.5: indistinguishable, 1: every row told apart).
    importance : dict
        {column: drop in that AUROC when the column is shuffled among the held-out rows}; empty when not asked for.
    """

    auroc: float
    importance: dict[str, float] = field(default_factory=dict)


def _auroc(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC of `scores` (last axis: rows) for labels `y`, as the Mann-Whitney U statistic (ties count one half)."""
    positive = y == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    ranks = rankdata(scores, axis=-1)[..., positive].sum(axis=-1)
    return (ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _permuted_copies(x: np.ndarray, repeats: int, rng: np.random.Generator) -> np.ndarray:
    """(columns, repeats, rows, columns): copies of `x`, copy (j, r) with column j shuffled among the rows."""
    rows, columns = x.shape
    copies = np.broadcast_to(x, (columns, repeats, rows, columns)).copy()
    for j in range(columns):
        for r in range(repeats):
            copies[j, r, :, j] = x[rng.permutation(rows), j]
    return copies


def detection(synthetic: pd.DataFrame, real: pd.DataFrame, transformer: TableTransformer, seed: int = 0,
              folds: int = 3, importance: bool = False, repeats: int = 2, memo: dict | None = None) -> Detection:
    """The detection AUROC and, if `importance`, each column's share in it, from one set of fitted folds.

    `n = min(len(real), len(synthetic))` rows of each are drawn; a gradient-boosting classifier (`ITERATIONS` trees
    at `LEARNING_RATE`) is fitted on each of `folds` stratified folds' complement and predicts the fold. The
    importance of a column is the out-of-fold AUROC minus the out-of-fold AUROC obtained when that column's values
    are shuffled among each held-out fold's rows (real and synthetic together; the classifier is not refitted),
    averaged over `repeats` shuffles. It reads in AUROC points: 0 for a column the classifier does not use, close to
    `auroc - 0.5` for the one column that gives the synthetic rows away; a small negative value is chance. Columns
    that carry the same signal share it (shuffling one leaves its twin), so a drift spread over correlated columns
    shows smaller on each. Deterministic for a given seed; NaN everywhere when there are fewer than `2 * folds` rows
    of either. Cost: one prediction over `columns x repeats` shuffled copies of each fold, no refit (on one core,
    415 + 415 rows of 32 columns: 0.1 s for the AUROC, 0.06 s more for the importances at `repeats=2`). `memo`: a
    dict kept across calls with the same `real` rows, where the encoded real rows are kept (the draw of real rows
    depends on `seed` and the sample size only).
    """
    from sklearn.model_selection import StratifiedKFold

    columns = list(transformer.columns)
    n = min(len(real), len(synthetic))
    if n < 2 * folds:
        return Detection(float("nan"), {c: float("nan") for c in columns} if importance else {})
    rng = np.random.default_rng(seed)
    drawn = rng.choice(len(real), n, replace=False)
    syn_rows = synthetic.iloc[rng.choice(len(synthetic), n, replace=False)]
    memo = {} if memo is None else memo
    if (seed, n) not in memo:
        memo[(seed, n)] = feature_matrix(real.iloc[drawn], transformer, columns)
    x_real, categorical = memo[(seed, n)]
    categorical = categorical & ~two_level(transformer, columns)
    x_syn, _ = feature_matrix(syn_rows, transformer, columns)
    x, y = np.vstack([x_real, x_syn]), np.r_[np.zeros(n), np.ones(n)]
    shuffle = np.random.default_rng([seed, 1])  # apart from the row draw: asking for importances changes no AUROC
    p = np.empty(2 * n)
    p_shuffled = np.empty((len(columns), repeats, 2 * n)) if importance else None
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        model = classifier(categorical, seed, ITERATIONS, LEARNING_RATE).fit(x[train], y[train])
        p[test] = model.predict_proba(x[test])[:, 1]
        if p_shuffled is not None:  # every shuffled copy of the fold in one call: one pass over the trees
            copies = _permuted_copies(x[test], repeats, shuffle)
            p_shuffled[:, :, test] = model.predict_proba(copies.reshape(-1, x.shape[1]))[:, 1].reshape(
                copies.shape[:3])
    auroc = float(_auroc(y, p))
    if p_shuffled is None:
        return Detection(auroc)
    drops = auroc - _auroc(y, p_shuffled).mean(axis=1)
    return Detection(auroc, {c: float(d) for c, d in zip(columns, drops)})


def detection_auroc(synthetic: pd.DataFrame, real: pd.DataFrame, transformer: TableTransformer,
                    seed: int = 0, folds: int = 3) -> float:
    """Out-of-fold AUROC of a gradient-boosting classifier separating `real` from an equal synthetic sample."""
    return detection(synthetic, real, transformer, seed, folds).auroc


def detection_importance(synthetic: pd.DataFrame, real: pd.DataFrame, transformer: TableTransformer,
                         seed: int = 0, folds: int = 3, repeats: int = 2) -> dict[str, float]:
    """{column: AUROC points lost when it is shuffled} of the detection classifier (see `detection`)."""
    return detection(synthetic, real, transformer, seed, folds, importance=True, repeats=repeats).importance


def top_features(importance: Mapping[str, float], k: int = 5) -> list[tuple[str, float]]:
    """The `k` columns that give the synthetic rows away most, largest importance first (NaN last)."""
    return sorted(importance.items(), key=lambda item: -item[1] if np.isfinite(item[1]) else np.inf)[:k]
