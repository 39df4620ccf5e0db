"""Column transforms: exact round trips, rank order kept, missingness kept, and merged statistics that equal
the pooled ones."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcsynth.comm import SoloComm
from hpcsynth.data.schema import ColumnSpec, DataError
from hpcsynth.data.transforms import GRID_BINS, CategoricalTransform, NumericTransform

RNG = np.random.default_rng(0)


def fitted_numeric(values, kind="continuous"):
    return NumericTransform(ColumnSpec("x", kind)).fit(pd.Series(values), SoloComm())


def onehot_logits(block):
    """Turn a one-hot block into logits that make sampling deterministic (the encoded row's level)."""
    return np.where(block > 0.5, 50.0, -50.0)


def decode_exact(t, block):
    """Decode an encoded block back (missingness blocks replaced by near-certain logits)."""
    block = block.copy()
    if isinstance(t, NumericTransform) and t.has_missing:
        block[:, 1:3] = onehot_logits(block[:, 1:3])
    if isinstance(t, CategoricalTransform):
        block = onehot_logits(block)
    return t.decode(block, np.random.default_rng(0))


@given(st.lists(st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.none()), min_size=2, max_size=60)
       .filter(lambda v: sum(x is not None for x in v) >= 1))
@settings(max_examples=60, deadline=None)
def test_numeric_round_trip_within_one_grid_bin(values):
    series = pd.Series([np.nan if v is None else v for v in values], dtype=float)
    t = fitted_numeric(series)
    back = decode_exact(t, t.encode(series)).to_numpy()
    assert np.array_equal(np.isnan(back), series.isna().to_numpy())
    bound = 0.0013 * (t.max_ - t.min_) + 1e-9 * max(abs(t.max_), abs(t.min_), 1.0)
    present = ~series.isna().to_numpy()
    assert np.all(np.abs(back[present] - series.to_numpy()[present]) <= bound)


@given(st.lists(st.integers(-1000, 1000), min_size=2, max_size=60))
@settings(max_examples=40, deadline=None)
def test_integer_round_trip_is_exact(values):
    series = pd.Series(values, dtype=float)
    t = fitted_numeric(series, "integer")
    back = decode_exact(t, t.encode(series))
    assert np.array_equal(back.to_numpy(), series.to_numpy())


def test_encoding_keeps_rank_order_and_is_gaussian():
    x = RNG.lognormal(size=20_000)
    t = fitted_numeric(x)
    z = t.encode(pd.Series(x))[:, 0]
    order = np.argsort(x)
    assert np.all(np.diff(z[order]) >= 0)
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02


def test_heavy_tail_keeps_resolution_in_the_bulk():
    x = np.concatenate([RNG.normal(100, 5, 5000), [1e6]])
    t = fitted_numeric(x)
    back = decode_exact(t, t.encode(pd.Series(x)))
    assert np.abs(back.to_numpy()[:-1] - x[:-1]).max() < 1.0


def test_constant_column_round_trips():
    t = fitted_numeric([5.0, 5.0, np.nan])
    back = decode_exact(t, t.encode(pd.Series([5.0, 5.0, np.nan])))
    assert back.iloc[0] == 5.0 and np.isnan(back.iloc[2])


def test_all_missing_column_is_an_error_naming_it():
    with pytest.raises(DataError, match="column 'x': all values are missing"):
        fitted_numeric([np.nan, np.nan])


def test_merged_site_histograms_equal_the_pooled_fit():
    x = RNG.gamma(2.0, 3.0, 3000)
    pooled = fitted_numeric(x)
    parts = np.array_split(x, 3)
    t = NumericTransform(ColumnSpec("x", "continuous"))
    stats = sum(t.range_stats(p) for p in parts)
    extremes = np.minimum.reduce([t.extreme_stats(p) for p in parts])
    t.finish_range(stats, extremes)
    t.finish(sum(t.fit_stats(p) for p in parts))
    assert np.array_equal(t.cdf_, pooled.cdf_) and t.cdf_.size == GRID_BINS + 1
    probe = pd.Series(RNG.gamma(2.0, 3.0, 100))
    assert np.array_equal(t.encode(probe), pooled.encode(probe))


def test_categorical_keeps_rare_levels_and_missing_as_a_level():
    values = pd.Series(["a"] * 50 + ["rare"] + [None] * 5)
    t = CategoricalTransform(ColumnSpec("c", "categorical")).fit(values, SoloComm())
    assert t.labels_ == ["a", "rare"] and t.width == 3
    block = t.encode(values)
    assert block.sum(axis=1).tolist() == [1.0] * len(values)
    back = decode_exact(t, block)
    assert back.tolist() == values.tolist()


def test_binary_floats_decode_as_floats_with_nan():
    values = pd.Series([0.0, 1.0, np.nan, 1.0])
    t = CategoricalTransform(ColumnSpec("g", "binary")).fit(values, SoloComm())
    back = decode_exact(t, t.encode(values))
    assert back.dtype == float and np.array_equal(back.to_numpy(), values.to_numpy(), equal_nan=True)


def test_sampled_missingness_follows_the_logits():
    t = fitted_numeric(np.r_[RNG.normal(size=900), [np.nan] * 100])
    block = t.encode(pd.Series(np.r_[RNG.normal(size=900), [np.nan] * 100]))
    block[:, 1:3] = np.log([0.7, 0.3])
    back = t.decode(block, np.random.default_rng(1))
    assert abs(back.isna().mean() - 0.3) < 0.05
