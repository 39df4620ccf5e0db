"""The matrix the classifiers of the evaluation see (detection, utility, fairness).

Gradient-boosted trees need no scaling and take missing values natively, so numbers stay as they are (NaN kept:
missingness is part of what a synthetic table must reproduce) and categories become their shared codes, declared
categorical to scikit-learn's `HistGradientBoostingClassifier`. Real and synthetic rows are encoded with the same
shared transform, so a level means the same code on both sides.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform


def feature_matrix(frame: pd.DataFrame, transformer: TableTransformer,
                   columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, categorical mask) of `columns`; category codes with missing as the last code."""
    blocks, categorical = [], []
    for name in columns:
        t = transformer.transform_of(name)
        if isinstance(t, CategoricalTransform):
            blocks.append(t.codes(frame[name]).astype(np.float64))
            categorical.append(True)
        else:
            blocks.append(pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))
            categorical.append(False)
    return np.column_stack(blocks), np.asarray(categorical)


def classifier(categorical: np.ndarray, seed: int = 0, max_iter: int = 60, learning_rate: float = 0.1):
    """scikit-learn's histogram gradient boosting, small and seeded: seconds on thousands of rows. Without a
    categorical column, none is declared (scikit-learn then skips its per-column category encoder)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=max_iter, max_leaf_nodes=15, learning_rate=learning_rate,
                                          categorical_features=categorical if categorical.any() else None,
                                          random_state=seed)


def two_level(transformer: TableTransformer, columns: list[str]) -> np.ndarray:
    """Which of `columns` are categories of at most two levels (their codes 0, 1, and 2 for missing)."""
    return np.array([isinstance(t := transformer.transform_of(c), CategoricalTransform) and len(t.labels_) <= 2
                     for c in columns], dtype=bool)


def observed_columns(x: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    """Which columns of a fit's rows scikit-learn's histogram boosting can bin: a numeric column without any
    value among them (a lab never measured in a small release) fails its binning and carries nothing, so it is
    left out; a categorical one is kept (its missing values are a level)."""
    return categorical | ~np.isnan(x).all(axis=0)
