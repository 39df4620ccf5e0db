"""The classifier two-sample test: chance on one distribution, perfect on disjoint ones."""
import numpy as np
import pandas as pd

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.detection import detection_auroc


def _frame(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n) + shift, "c": rng.choice(["a", "b"], n)})


def test_same_distribution_is_near_chance_and_disjoint_is_detected():
    real = _frame(400, 0)
    transformer = TableTransformer(categorical=["c"]).fit(real)
    assert abs(detection_auroc(_frame(400, 1), real, transformer) - 0.5) < 0.08
    assert detection_auroc(_frame(400, 2, shift=10.0), real, transformer) > 0.99
