"""DCR: distances in the shared feature space, checked against a brute-force reference."""
import numpy as np
import pandas as pd

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.attacks import distance_scores, site_distances
from hpcsynth.evaluate.privacy import privacy_features

RNG = np.random.default_rng(0)


def frame(n):
    return pd.DataFrame({"x": RNG.normal(size=n), "c": RNG.choice(["a", "b", "c"], n)})


def test_features_put_a_category_mismatch_at_distance_one():
    train = frame(200)
    t = TableTransformer().fit(train)
    f = privacy_features(pd.DataFrame({"x": [0.0, 0.0], "c": ["a", "b"]}), t)
    assert np.isclose(np.linalg.norm(f[0] - f[1]), 1.0)
    assert f[:, 0].min() >= 0 and f[:, 0].max() <= 1


def test_copied_rows_have_zero_dcr_and_fresh_rows_do_not():
    train, holdout = frame(300), frame(100)
    t = TableTransformer().fit(train)
    copied = distance_scores([site_distances(train.iloc[:50], train, holdout, t)])
    assert copied["dcr_synthetic_p5"] == 0.0 and copied["exact_match_rate"] == 1.0
    fresh = distance_scores([site_distances(frame(200), train, holdout, t)])
    assert fresh["dcr_synthetic_p5"] > 0 and fresh["exact_match_rate"] == 0.0
    reference = privacy_features(train, t)
    held = privacy_features(holdout, t)
    brute = np.sqrt(((held[:, None, :] - reference[None, :, :]) ** 2).sum(-1)).min(1)
    assert np.isclose(fresh["dcr_holdout_p5"], np.percentile(brute, 5), rtol=1e-5)
