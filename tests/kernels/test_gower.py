"""Gower nearest neighbours equal a float64 reference of the documented definition, missing values included."""
import numpy as np
import pytest

from hpcsynth.kernels import nearest_neighbours


def gower_reference(q, r, is_cat, ranges, weights):
    """Straight from the definition, one pair at a time."""
    out = np.empty((len(q), len(r)))
    for i, x in enumerate(q):
        for j, y in enumerate(r):
            num = den = 0.0
            for c in range(len(x)):
                missing = np.isnan(x[c]) or np.isnan(y[c]) or (is_cat[c] and (x[c] < 0 or y[c] < 0))
                if missing:
                    continue
                if is_cat[c]:
                    s = float(x[c] != y[c])
                else:
                    s = abs(x[c] - y[c]) / ranges[c] if ranges[c] > 0 else 0.0
                num += weights[c] * s
                den += weights[c]
            out[i, j] = num / den if den > 0 else 1.0
    return out


def mixed_table(rng, n):
    age = rng.normal(60, 12, n)
    bmi = rng.normal(27, 4, n)
    sex = rng.integers(0, 2, n)
    stage = rng.integers(0, 4, n)
    return np.stack([age, sex, bmi, stage], axis=1)


def test_mixed_columns_match_the_definition_with_default_ranges(rng):
    q, r = mixed_table(rng, 40), mixed_table(rng, 150)
    is_cat = np.array([False, True, False, True])
    both = np.concatenate([q, r])
    ranges = both.max(0) - both.min(0)
    d, i = nearest_neighbours(q, r, k=3, metric="gower", categorical=[1, 3])
    full = gower_reference(q, r, is_cat, ranges, np.ones(4))
    order = np.argsort(full, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(i, order)
    np.testing.assert_allclose(d, np.take_along_axis(full, order, 1), rtol=1e-6)


def test_missing_values_drop_out_and_weights_renormalise(rng):
    q, r = mixed_table(rng, 30), mixed_table(rng, 80)
    q[rng.random(q.shape) < 0.2] = np.nan
    r[rng.random(r.shape) < 0.2] = np.nan
    r[::7, 3] = -1  # pandas' code for a missing category
    r[5] = np.nan  # a row with nothing to compare: distance 1
    is_cat = np.array([False, True, False, True])
    weights = np.array([2.0, 0.5, 1.0, 1.0])
    ranges = np.array([50.0, 0.0, 20.0, 0.0])
    d, i = nearest_neighbours(q, r, k=4, metric="gower", categorical=is_cat, ranges=ranges, weights=weights)
    full = gower_reference(q, r, is_cat, ranges, weights)
    assert (full[:, 5] == 1.0).all()
    order = np.argsort(full, axis=1, kind="stable")[:, :4]
    np.testing.assert_allclose(d, np.take_along_axis(full, order, 1), rtol=1e-6)
    np.testing.assert_allclose(np.take_along_axis(full, i, 1), np.take_along_axis(full, order, 1), rtol=1e-12)


def test_all_categorical_ties_break_by_lower_index(rng):
    codes = rng.integers(0, 3, size=(60, 5)).astype(np.float32)
    d, i = nearest_neighbours(codes, codes, k=3, metric="gower", categorical=np.arange(5), exclude_self=True)
    full = gower_reference(codes, codes, np.ones(5, bool), np.zeros(5), np.ones(5))
    np.fill_diagonal(full, np.inf)
    np.testing.assert_array_equal(i, np.argsort(full, axis=1, kind="stable")[:, :3])
    assert (i != np.arange(60)[:, None]).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"categorical": [4]}, "column indices"),
    ({"categorical": [True, False]}, "boolean categorical mask needs 3"),
    ({"weights": [1.0, -1.0, 1.0]}, "weights must be 3"),
    ({"weights": [0.0, 0.0, 0.0]}, "weights must be 3"),
    ({"ranges": [1.0, 2.0]}, "ranges must hold 3"),
])
def test_bad_gower_options_are_rejected(kwargs, message):
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match=message):
        nearest_neighbours(x, x, metric="gower", **kwargs)


def test_gower_options_need_the_gower_metric_and_inf_is_rejected():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="metric='gower' only"):
        nearest_neighbours(x, x, categorical=[0])
    y = x.copy()
    y[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        nearest_neighbours(y, x, metric="gower")
