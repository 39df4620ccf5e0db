"""Utility: is a model trained on synthetic rows as good on real patients as one trained on real rows?

Train on synthetic, test on real (TSTR; Esteban et al. 2017) against train on real, test on real (TRTR), both
tested on the same real held-out rows with gradient-boosted trees (`encoding.BoostedTrees`). Reported for both: AUROC
(one-vs-rest macro for more than two classes), balanced accuracy and the G-mean (geometric mean of the
per-class recalls), which, unlike accuracy, do not reward predicting the majority class of an imbalanced
outcome. The ratio TSTR/TRTR of the AUROC says how much of the real data's utility the synthetic table keeps.

Federated: TRTR trains on the site's own training rows; both are tested on the site's held-out rows and the
scores are averaged over sites, weighted by held-out rows (documented in `hpcsynth.evaluate.pooling`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform
from hpcsynth.evaluate.encoding import classifier, feature_matrix


def g_mean(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Geometric mean of the recall of every class present in `y_true`."""
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.prod(recalls) ** (1.0 / len(recalls)))


def classification_scores(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """AUROC, balanced accuracy and G-mean of predicted class probabilities (columns ordered as `classes`)."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    pred = classes[np.argmax(proba, axis=1)]
    present = np.intersect1d(np.unique(y_true), classes)  # a class the model never saw has no score column
    rows = np.isin(y_true, present)
    p = proba[rows][:, np.searchsorted(classes, present)]
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    if present.size < 2:
        auc = float("nan")
    elif present.size == 2:
        auc = float(roc_auc_score(y_true[rows] == present[1], p[:, 1]))
    else:
        auc = float(roc_auc_score(y_true[rows], p, multi_class="ovr", labels=present))
    return {"auroc": auc, "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
            "g_mean": g_mean(y_true, pred)}


def target_codes(frame: pd.DataFrame, transformer: TableTransformer, target: str) -> np.ndarray:
    t = transformer.transform_of(target)
    if not isinstance(t, CategoricalTransform):
        raise ValueError(f"utility target {target!r} must be categorical or binary")
    return t.codes(frame[target])


def fit(train: pd.DataFrame, transformer: TableTransformer, target: str, features: list[str], seed: int = 0):
    """A classifier of `target` fitted on `train` (rows with a known target), or None when `train` has one class."""
    y = target_codes(train, transformer, target)
    keep = y != len(transformer.transform_of(target).labels_)
    if np.unique(y[keep]).size < 2:
        return None
    x, categorical = feature_matrix(train[keep], transformer, features)
    return classifier(categorical, seed).fit(x, y[keep])


def test_matrix(test: pd.DataFrame, transformer: TableTransformer, target: str,
                features: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows with a known target, their labels, their feature matrix): what `predict` reads of the test rows,
    the same for every model."""
    y = target_codes(test, transformer, target)
    keep = y != len(transformer.transform_of(target).labels_)
    x, _ = feature_matrix(test[keep], transformer, features) if keep.any() else (None, None)
    return keep, y[keep], x


def predict(model, test: pd.DataFrame, transformer: TableTransformer, target: str, features: list[str],
            encoded: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(test labels, predicted probabilities, classes) of `model` on the rows of `test` with a known target;
    None without a model or without such rows. `encoded`: `test_matrix` of these rows, kept from an earlier
    call."""
    keep, y, x = encoded if encoded is not None else test_matrix(test, transformer, target, features)
    if model is None or not keep.any():
        return None
    return y, model.predict_proba(x), model.classes_


def fit_predict(train: pd.DataFrame, test: pd.DataFrame, transformer: TableTransformer, target: str,
                features: list[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """`predict` on `test` with a model `fit` on `train`."""
    return predict(fit(train, transformer, target, features, seed), test, transformer, target, features)


def fit_scores(fitted: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> dict[str, float]:
    """`classification_scores` of a `fit_predict` result (NaN without one)."""
    return classification_scores(*fitted) if fitted is not None else \
        {"auroc": float("nan"), "balanced_accuracy": float("nan"), "g_mean": float("nan")}


def compare_fits(tstr, trtr, trtr_scores: dict[str, float] | None = None) -> dict[str, float]:
    """`tstr_*` and `trtr_*` AUROC, balanced accuracy and G-mean from two `fit_predict` results, and the ratio;
    `trtr_scores`: `fit_scores(trtr)`, kept from an earlier call."""
    scores: dict[str, float] = {f"tstr_{k}": v for k, v in fit_scores(tstr).items()}
    scores.update({f"trtr_{k}": v for k, v in (trtr_scores if trtr_scores is not None else fit_scores(trtr)).items()})
    trtr = scores["trtr_auroc"]
    scores["tstr_trtr_auroc_ratio"] = scores["tstr_auroc"] / trtr if trtr > 0 else float("nan")
    return scores


def tstr_trtr(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, transformer: TableTransformer,
              target: str, features: list[str], seed: int = 0) -> dict[str, float]:
    """TSTR and TRTR scores on `holdout` (see `compare_fits`)."""
    return compare_fits(fit_predict(synthetic, holdout, transformer, target, features, seed),
                        fit_predict(train, holdout, transformer, target, features, seed))
