"""The classifier two-sample test: chance on one distribution, perfect on disjoint ones; its importances name the
column that differs."""
import numpy as np
import pandas as pd

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.detection import detection, detection_auroc, detection_importance, top_features


def _frame(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n) + shift, "c": rng.choice(["a", "b"], n)})


def _wide(n, seed, shifted=None):
    """Four correlated numbers and a category; `shifted` moves one column by one standard deviation."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    frame = pd.DataFrame({f"x{k}": 0.5 * z + rng.normal(size=n) for k in range(4)})
    frame["c"] = np.where(z + rng.normal(size=n) > 0, "high", "low")
    if shifted is not None:
        frame[shifted] += frame[shifted].std()
    return frame


def test_same_distribution_is_near_chance_and_disjoint_is_detected():
    real = _frame(400, 0)
    transformer = TableTransformer(categorical=["c"]).fit(real)
    assert abs(detection_auroc(_frame(400, 1), real, transformer) - 0.5) < 0.08
    assert detection_auroc(_frame(400, 2, shift=10.0), real, transformer) > 0.99


def test_the_one_shifted_column_is_the_top_feature_by_a_clear_margin():
    real = _wide(300, 0)
    transformer = TableTransformer(categorical=["c"]).fit(real)
    importance = detection_importance(_wide(300, 1, shifted="x2"), real, transformer, seed=3)
    assert set(importance) == {"x0", "x1", "x2", "x3", "c"}
    (top, value), (_, runner_up) = top_features(importance, k=2)
    assert top == "x2"
    assert value > 0.15 and value > 4 * max(runner_up, 0.01)


def test_importances_are_deterministic_and_leave_the_auroc_unchanged():
    real, synthetic = _wide(300, 0), _wide(300, 1, shifted="x1")
    transformer = TableTransformer(categorical=["c"]).fit(real)
    first = detection(synthetic, real, transformer, seed=5, importance=True)
    assert first == detection(synthetic, real, transformer, seed=5, importance=True)
    assert first.auroc == detection_auroc(synthetic, real, transformer, seed=5)
    assert detection(synthetic, real, transformer, seed=5).importance == {}


def test_too_few_rows_give_nan_for_every_column():
    real = _wide(4, 0)
    transformer = TableTransformer(categorical=["c"]).fit(_wide(300, 0))
    result = detection(_wide(300, 1), real, transformer, importance=True)
    assert np.isnan(result.auroc) and set(result.importance) == set(transformer.columns)
    assert all(np.isnan(v) for v in result.importance.values())
