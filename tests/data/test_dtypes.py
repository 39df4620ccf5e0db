"""Column dtypes: what each site records, how sites merge them, and restoring decoded values to them; the
numeric-category level merge across real mpiexec ranks."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hpcsynth.comm import SoloComm
from hpcsynth.data.dtypes import DType, dtype_of, merge_dtypes, restore
from hpcsynth.data.schema import ColumnSpec
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform

PROGRAM = Path(__file__).parent / "programs" / "level_merge.py"
OSLO = "datetime64[s, Europe/Oslo]"


@pytest.mark.parametrize("values, expected", [
    (pd.Series([1, 2, 3]), DType("int64")),
    (pd.Series([1, None], dtype="Int64"), DType("Int64")),
    (pd.Series([1.5, None], dtype="float32"), DType("float32")),
    (pd.Series([True, False]), DType("bool")),
    (pd.Series(["a", None], dtype=object), DType("object")),
    (pd.Series([1, 10, None], dtype=object), DType("object", "int64")),
    (pd.Series(["a"], dtype="string"), DType("string")),
    (pd.Series(pd.Categorical([3, 1], categories=[3, 1], ordered=True)), DType("category", "int64", True, ("3", "1"))),
    (pd.Series(pd.Categorical(["b", "a"])), DType("category", None, False, ("a", "b"))),
    (pd.Series(pd.to_datetime(["2020-01-01"]).tz_localize("Europe/Oslo").astype("datetime64[us, Europe/Oslo]")),
     DType("datetime64[us, Europe/Oslo]")),
    (pd.Series([None, None], dtype=object), None),
])
def test_a_site_records_its_columns_dtype(values, expected):
    assert dtype_of(values) == expected
    assert expected is None or DType.from_text(expected.to_text()) == expected


@pytest.mark.parametrize("names, kind, expected", [
    (["int64", "int64"], "integer", "int64"),
    (["int64", "float64"], "categorical", "Int64"),  # integer codes with gaps at one site stay integers
    (["int64", "float64"], "continuous", "float64"),
    (["int64", "Int64"], "integer", "Int64"),
    (["bool", "boolean"], "binary", "boolean"),
    (["int64", "object"], "categorical", "object"),
    (["datetime64[ns]", "datetime64[us]"], "datetime", "datetime64[ns]"),
])
def test_sites_merge_dtypes_as_their_pooled_rows_would_keeping_integer_codes_integers(names, kind, expected):
    assert merge_dtypes([DType(n) for n in names] + [None], kind).name == expected


def test_categoricals_merge_their_declared_order():
    merged = merge_dtypes([DType("category", None, True, ("lo", "mid")), DType("category", None, True, ("mid", "hi"))],
                          "categorical")
    assert merged == DType("category", None, True, ("lo", "mid", "hi"))


@pytest.mark.parametrize("decoded, dtype, expected", [
    (pd.Series([1.0, 9.0]), DType("int64"), pd.Series([1, 9])),
    (pd.Series([1.0, np.nan]), DType("int32"), pd.Series([1, None], dtype="Int32")),
    (pd.Series([1.0, 0.0, np.nan]), DType("bool"), pd.Series([True, False, None], dtype="boolean")),
    (pd.Series(["3", None], dtype=object), DType("object", "int64"), pd.Series([3, None], dtype=object)),
    (pd.Series(["a", None], dtype=object), DType("string"), pd.Series(["a", None], dtype="string")),
    (pd.Series(pd.to_datetime(["2020-06-01 10:00:00"])), DType(OSLO),
     pd.Series(pd.to_datetime(["2020-06-01 12:00:00"]).tz_localize("Europe/Oslo").astype(OSLO))),
])
def test_restore_gives_decoded_values_their_dtype_back(decoded, dtype, expected):
    pd.testing.assert_series_equal(restore(decoded, dtype), expected)


def test_restored_categorical_keeps_every_level_in_declared_order_as_the_category_type():
    out = restore(pd.Series(["2", None], dtype=object), DType("category", "int64", True, ("3", "2", "1")),
                  levels=["1", "2", "3"])
    assert list(out.cat.categories) == [3, 2, 1] and out.cat.ordered and out.cat.categories.dtype == "int64"
    assert out[0] == 2 and pd.isna(out[1])


def test_a_schema_without_dtypes_leaves_decoded_values_as_they_are():
    assert restore(pd.Series([1.0, 2.0]), None).dtype == "float64"
    assert ColumnSpec.from_dict({"name": "x", "kind": "integer", "role": "feature"}).dtype is None


def test_integer_codes_stored_as_text_and_as_numbers_are_one_level_each():
    t = CategoricalTransform(ColumnSpec("g", "categorical", dtype=DType("object"))).fit(
        pd.Series(["2", "10", None, "2"]), SoloComm())
    assert t.labels_ == ["10", "2"]
    assert t.codes(pd.Series([2.0, 10, "10", np.nan])).tolist() == [1, 0, 0, 2]


def test_the_transformer_state_keeps_the_dtypes_and_the_zero_time_rule():
    frame = pd.DataFrame({"t": [0.5, 3.0, 4.0], "e": [1, 0, 1], "g": pd.Series([1, 2, None], dtype="Int64")})
    fitted = TableTransformer(["g"], time="t", event="e", zero_time=0.5, zero_time_rows=1).fit(frame)
    again = TableTransformer.from_state(fitted.state())
    assert [s.dtype.name for s in again.schema_] == ["float64", "int64", "Int64"]
    assert again.survival_ == {"time": "t", "zero_time": 0.5, "zero_time_rows": 1}


@pytest.mark.mpi
def test_numeric_categories_keep_their_levels_through_the_federated_merge(mpirun):
    """int64 at one site, float64 with gaps at another, text at a third: one level set, the pooled one."""
    result = mpirun(3, [sys.executable, str(PROGRAM)], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "EQUAL" in result.stdout
