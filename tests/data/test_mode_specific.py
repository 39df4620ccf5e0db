"""Mode-specific normalisation: exact round trips (missing values included), the modes of a multimodal column,
the state, the table-level option, and the federated fit (real mpiexec) equal to the pooled one."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcsynth.comm import SoloComm
from hpcsynth.data.mode_specific import ModeSpecificTransform
from hpcsynth.data.schema import ColumnSpec
from hpcsynth.data.transformer import TableTransformer

PROGRAM = Path(__file__).parents[1] / "federated" / "programs" / "mode_specific_fit.py"
RNG = np.random.default_rng(0)


def fitted(values, kind="continuous") -> ModeSpecificTransform:
    return ModeSpecificTransform(ColumnSpec("x", kind)).fit(pd.Series(values, dtype=float), SoloComm())


def as_logits(t: ModeSpecificTransform, block: np.ndarray) -> np.ndarray:
    """The encoded one-hot blocks as near-certain logits, so decoding draws the encoded mode and flag."""
    out = block.copy()
    out[:, 1:] = np.where(block[:, 1:] > 0.5, 50.0, -50.0)
    return out


def bimodal(n: int) -> np.ndarray:
    low = RNG.random(n) < 0.7
    return np.where(low, RNG.normal(60, 8, n), RNG.normal(250, 40, n))


@given(st.lists(st.one_of(st.floats(-1e5, 1e5, allow_nan=False), st.none()), min_size=2, max_size=50)
       .filter(lambda v: sum(x is not None for x in v) >= 1))
@settings(max_examples=40, deadline=None)
def test_decode_of_encode_returns_the_values_and_the_missing_ones(values):
    series = pd.Series([np.nan if v is None else v for v in values], dtype=float)
    t = fitted(series)
    back = t.decode(as_logits(t, t.encode(series)), np.random.default_rng(0)).to_numpy()
    present = series.notna().to_numpy()
    assert np.array_equal(np.isnan(back), ~present)
    scale = max(1.0, np.abs(series[present]).max())
    np.testing.assert_allclose(back[present], series[present], rtol=0, atol=1e-5 * scale)


def test_integer_columns_round_trip_exactly():
    values = RNG.integers(0, 40, 300).astype(float)
    t = fitted(values, kind="integer")
    back = t.decode(as_logits(t, t.encode(pd.Series(values))), np.random.default_rng(0))
    np.testing.assert_array_equal(back.to_numpy(), values)


def test_a_bimodal_column_gets_modes_at_both_clusters_and_the_encoding_layout():
    values = bimodal(3000)
    t = fitted(values)
    assert 2 <= t.n_modes <= 10 and np.all(t.weights_ > 0.005)
    low, high = t.weights_[t.means_ < 150].sum(), t.weights_[t.means_ > 150].sum()
    assert low == pytest.approx(0.7, abs=0.05) and high == pytest.approx(0.3, abs=0.05)
    assert t.spans == [("gaussian", 1), ("softmax", t.n_modes)]
    block = t.encode(pd.Series(values))
    assert block.shape == (3000, 1 + t.n_modes)
    assert np.all(block[:, 1:].sum(axis=1) == 1.0)
    # within its mode a value is standardised: the encoded values are of unit scale, not of the column's
    assert 0.5 < block[:, 0].std() < 1.5


def test_constant_columns_and_missing_flags():
    t = fitted([3.0, 3.0, np.nan, 3.0])
    assert t.spans == [("gaussian", 1), ("softmax", 2)]
    block = t.encode(pd.Series([3.0, np.nan]))
    np.testing.assert_array_equal(block, [[0, 1, 0], [0, 0, 1]])
    back = t.decode(as_logits(t, block), np.random.default_rng(0)).to_numpy()
    assert back[0] == 3.0 and np.isnan(back[1])


def test_decoded_values_stay_in_the_observed_range():
    values = bimodal(500)
    t = fitted(values)
    wild = np.zeros((200, t.width), dtype=np.float32)
    wild[:, 0] = np.linspace(-40, 40, 200)
    back = t.decode(wild, np.random.default_rng(1)).to_numpy()
    assert back.min() >= values.min() and back.max() <= values.max()


def test_state_rebuilds_the_same_transform_and_the_table_option_uses_it():
    frame = pd.DataFrame({"plt": bimodal(400), "sex": RNG.choice(["F", "M"], 400)})
    table = TableTransformer(numeric="mode_specific").fit(frame)
    assert isinstance(table.transform_of("plt"), ModeSpecificTransform)
    again = TableTransformer.from_state(table.state())
    np.testing.assert_array_equal(again.encode(frame), table.encode(frame))
    assert not isinstance(TableTransformer().fit(frame).transform_of("plt"), ModeSpecificTransform)  # default


@pytest.mark.mpi
def test_federated_fit_on_three_sites_equals_the_pooled_fit(mpirun):
    result = mpirun(3, [sys.executable, str(PROGRAM)], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "EQUAL" in result.stdout
