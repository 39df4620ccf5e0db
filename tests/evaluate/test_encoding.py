"""The evaluation's gradient-boosted trees: seeded, classes in their own order, categories split as categories."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score, roc_auc_score

from hpcsynth.evaluate.encoding import BoostedTrees, classifier


def _mixed(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A numeric column that carries the label and a noise column."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return np.column_stack([y + rng.normal(0, 0.8, n), rng.normal(size=n)]), y


def test_the_same_seed_gives_the_same_probabilities_and_they_sum_to_one():
    x, y = _mixed(600)
    first = classifier(np.zeros(2, bool), seed=3).fit(x, y).predict_proba(x)
    again = classifier(np.zeros(2, bool), seed=3).fit(x, y).predict_proba(x)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first.sum(axis=1), 1.0)
    assert roc_auc_score(y, first[:, 1]) > 0.8


def test_probability_columns_follow_classes_in_their_sorted_order():
    """Labels 7, 2, 5 (not 0..k-1): column j of predict_proba is classes_[j]."""
    rng = np.random.default_rng(1)
    labels = rng.choice([7, 2, 5], 900)
    x = np.column_stack([labels + rng.normal(0, 0.3, labels.size)])
    model = classifier(np.zeros(1, bool)).fit(x, labels)
    np.testing.assert_array_equal(model.classes_, [2, 5, 7])
    predicted = model.classes_[np.argmax(model.predict_proba(x), axis=1)]
    assert np.mean(predicted == labels) > 0.95


def test_a_declared_category_is_split_as_one_in_one_tree():
    """40 levels, every other one positive: one tree of 15 leaves cannot cut the codes into 40 runs in order,
    but one categorical split separates them."""
    rng = np.random.default_rng(2)
    level = rng.integers(0, 40, 8000)
    y = level % 2
    x = level[:, None].astype(np.float64)
    declared = BoostedTrees(np.array([True]), iterations=1, learning_rate=1.0).fit(x, y).predict_proba(x)[:, 1]
    ordered = BoostedTrees(np.array([False]), iterations=1, learning_rate=1.0).fit(x, y).predict_proba(x)[:, 1]
    assert roc_auc_score(y, declared) == pytest.approx(1.0)
    assert roc_auc_score(y, ordered) < 0.9


def test_the_regressor_follows_a_signal_and_ignores_missing_values_in_another_column():
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.uniform(-2, 2, 1000), np.full(1000, np.nan)])
    y = 3 * x[:, 0] + rng.normal(0, 0.1, 1000)
    fitted = BoostedTrees(np.zeros(2, bool), regression=True).fit(x, y).predict(x)
    assert r2_score(y, fitted) > 0.95
