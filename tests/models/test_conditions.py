"""Rejection sampling of conditions for the families that cannot condition their model."""
import numpy as np
import pandas as pd
import pytest

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.models.conditions import MAX_REJECTION, condition_codes, rejection_sample


@pytest.fixture()
def transformer() -> TableTransformer:
    frame = pd.DataFrame({"sex": ["F", "M"] * 50, "age": np.arange(100.0)})
    return TableTransformer().fit(frame)


def _drawer(rate: float):
    """Draws whose `sex` is F with probability `rate`, numbered in the order drawn."""
    rng, counter = np.random.default_rng(0), [0]

    def draw(m: int) -> pd.DataFrame:
        index = np.arange(counter[0], counter[0] + m, dtype=float)
        counter[0] += m
        return pd.DataFrame({"sex": np.where(rng.random(m) < rate, "F", "M"), "age": index})

    return draw


def test_rejection_keeps_the_first_n_draws_that_meet_the_condition(transformer):
    codes = condition_codes(transformer, {"sex": "F"})
    sample = rejection_sample(_drawer(0.3), 200, codes, transformer)
    assert len(sample) == 200 and (sample["sex"] == "F").all()
    assert sample["age"].is_monotonic_increasing and sample.index.tolist() == list(range(200))


def test_a_condition_too_rare_for_rejection_is_an_error_naming_it(transformer):
    codes = condition_codes(transformer, {"sex": "F"})
    with pytest.raises(ValueError, match=rf"conditions \{{'sex': 'F'\}}.*fewer than 1 in {MAX_REJECTION}"):
        rejection_sample(_drawer(0.0), 10, codes, transformer)


def test_zero_rows_is_an_empty_table_with_the_columns(transformer):
    codes = condition_codes(transformer, {"sex": "M"})
    assert list(rejection_sample(_drawer(0.5), 0, codes, transformer).columns) == ["sex", "age"]
