"""Schema inference: each site's guess, merged to the most general kind; declarations win."""
import numpy as np
import pandas as pd
import pytest

from hpcsynth.comm import SoloComm
from hpcsynth.data.schema import DataError, infer_kind, infer_schema, merge_kinds


@pytest.mark.parametrize("values, kind", [
    ([0.0, 1.0, np.nan], "binary"),
    ([True, False], "binary"),
    ([1, 2, 3], "integer"),
    ([1.5, 2.0], "continuous"),
    (["a", "b"], "categorical"),
    ([np.nan, np.nan], None),
])
def test_infer_kind(values, kind):
    assert infer_kind(pd.Series(values)) == kind


def test_merge_takes_the_most_general_kind():
    assert merge_kinds(["binary", None, "integer"], "x") == "integer"
    assert merge_kinds(["integer", "continuous"], "x") == "continuous"
    assert merge_kinds(["continuous", "categorical"], "x") == "categorical"
    with pytest.raises(DataError, match="column 'x': all values are missing on every site"):
        merge_kinds([None, None], "x")


def test_declarations_override_inference():
    frame = pd.DataFrame({"code": [1, 2, 3], "t": [1, 2, 3], "e": [0, 1, 1], "v": [0.5, 1.5, 2.5]})
    specs = infer_schema(frame, SoloComm(), declared_categorical=["code"], time="t", event="e")
    assert [(s.name, s.kind, s.role) for s in specs] == [
        ("code", "categorical", "feature"), ("t", "continuous", "time"), ("e", "binary", "event"),
        ("v", "continuous", "feature")]
