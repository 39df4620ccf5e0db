"""The matrix the classifiers of the evaluation see (detection, utility, fairness).

Gradient-boosted trees need no scaling and take missing values natively, so numbers stay as they are (NaN kept:
missingness is part of what a synthetic table must reproduce) and categories become their shared codes, declared
categorical to the trees (`BoostedTrees`, LightGBM's). Real and synthetic rows are encoded with the same shared
transform, so a level means the same code on both sides.
"""
from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class BoostedTrees:
    """Small seeded gradient-boosted trees on one thread, LightGBM's: the classifier of detection and utility and
    the regressor of temporal utility, with the categorical columns declared as such.

    LightGBM rather than scikit-learn's histogram boosting (the same algorithm): on the few hundred rows of a
    site's held-out share, scikit-learn's per-fit category encoding and binning cost more than the trees, and the
    per-round evaluation repeats these fits at every site. Deterministic for a given seed.

    Parameters
    ----------
    categorical : ndarray of bool
        Which columns of the matrix are category codes (non-negative integers).
    seed : int
        Seed of the fit.
    iterations : int
        Boosting rounds (trees).
    learning_rate : float
        Shrinkage of each tree.
    min_leaf : int
        Fewest rows in a leaf, and in a group of levels that a categorical split separates.
    regression : bool
        A regressor (`predict`) instead of a classifier (`predict_proba`, `classes_`).
    """

    categorical: np.ndarray
    seed: int = 0
    iterations: int = 60
    learning_rate: float = 0.1
    min_leaf: int = 20
    regression: bool = False

    def fit(self, x: np.ndarray, y: np.ndarray) -> BoostedTrees:
        import lightgbm

        if self.regression:
            target, objective = y, {"objective": "regression"}
        else:
            self.classes_, target = np.unique(y, return_inverse=True)
            objective = {"objective": "binary"} if len(self.classes_) <= 2 else \
                {"objective": "multiclass", "num_class": len(self.classes_)}
        params = {**objective, "num_leaves": 15, "learning_rate": self.learning_rate,
                  "min_data_in_leaf": self.min_leaf, "min_data_per_group": self.min_leaf, "seed": self.seed,
                  "num_threads": 1, "deterministic": True, "force_row_wise": True, "verbose": -1}
        data = lightgbm.Dataset(x, target, categorical_feature=[int(j) for j in np.flatnonzero(self.categorical)],
                                params=params)
        # the booster kept as trained: lightgbm.train otherwise copies it through its text form
        self.booster_ = lightgbm.train(params, data, self.iterations, keep_training_booster=True)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(rows, classes) probabilities, columns in the order of `classes_`."""
        p = self.booster_.predict(x)
        return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The regressor's predictions."""
        return self.booster_.predict(x)


def classifier(categorical: np.ndarray, seed: int = 0, max_iter: int = 60, learning_rate: float = 0.1,
               min_leaf: int = 20) -> BoostedTrees:
    """The evaluation's classifier: small and seeded, seconds on thousands of rows."""
    return BoostedTrees(categorical, seed, max_iter, learning_rate, min_leaf)


def two_level(transformer: TableTransformer, columns: list[str]) -> np.ndarray:
    """Which of `columns` are categories of at most two levels (their codes 0, 1, and 2 for missing)."""
    return np.array([isinstance(t := transformer.transform_of(c), CategoricalTransform) and len(t.labels_) <= 2
                     for c in columns], dtype=bool)
