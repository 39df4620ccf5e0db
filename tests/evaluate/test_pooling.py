"""Weighted means over sites skip a site that could not compute a score."""
import math

import pytest

from hpcsynth.evaluate.pooling import weighted_mean


def test_weighted_mean_over_sites_skips_nan(sites):
    values = [{"a": 1.0, "b": float("nan")}, {"b": 3.0, "a": 2.0}, {"a": 4.0, "b": float("nan")}]
    weights = [1.0, 2.0, 1.0]
    got = sites(lambda comm, k: weighted_mean(values[k], weights[k], comm), 3)
    assert got[0] == got[2] == pytest.approx({"a": (1 + 4 + 4) / 4, "b": 3.0})
    assert math.isnan(sites(lambda comm, k: weighted_mean({"c": float("nan")}, 1.0, comm), 2)[0]["c"])
