"""TSTR/TRTR scores against scikit-learn's metrics and closed forms."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.utility import classification_scores, g_mean, tstr_trtr


def test_g_mean_is_geometric_mean_of_recalls():
    y, p = np.array([0, 0, 0, 0, 1, 1]), np.array([0, 0, 0, 1, 1, 0])
    assert g_mean(y, p) == pytest.approx(np.sqrt(0.75 * 0.5))


def test_classification_scores_equal_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    proba = np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1)
    got = classification_scores(y, np.column_stack([1 - proba, proba]), np.array([0, 1]))
    pred = (proba > 0.5).astype(int)
    assert got["auroc"] == pytest.approx(roc_auc_score(y, proba))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    multi = rng.dirichlet([1, 1, 1], 200)
    y3 = rng.integers(0, 3, 200)
    reference = roc_auc_score(y3, multi, multi_class="ovr")
    assert classification_scores(y3, multi, np.arange(3))["auroc"] == pytest.approx(reference)


def test_training_on_the_real_rows_themselves_makes_tstr_equal_trtr():
    rng = np.random.default_rng(1)
    x = rng.normal(size=600)
    frame = pd.DataFrame({"x": x, "z": rng.normal(size=600), "y": (x + rng.normal(size=600) * 0.5 > 0).astype(float)})
    train, holdout = frame.iloc[:400], frame.iloc[400:]
    transformer = TableTransformer().fit(train)
    scores = tstr_trtr(train, train, holdout, transformer, "y", ["x", "z"])
    assert scores["tstr_auroc"] == scores["trtr_auroc"] > 0.8 and scores["tstr_trtr_auroc_ratio"] == 1.0
    noise = train.assign(y=rng.permutation(train["y"].to_numpy()))
    assert tstr_trtr(noise, train, holdout, transformer, "y", ["x", "z"])["tstr_auroc"] < 0.65
