"""Releases of either shape pooled over sites and shared out over ranks: tables row by row, sequences patient by
patient (every visit with its patient, keys made unique)."""
import pandas as pd
import pytest

from hpcsynth.data.releases import pool, shard
from hpcsynth.data.sequences import Sequences


def _site(patients: int, first_day: float) -> Sequences:
    context = pd.DataFrame({"id": range(patients), "arm": ["A", "B"] * (patients // 2) + ["A"] * (patients % 2)})
    visits = pd.DataFrame({"id": [k for k in range(patients) for _ in range(k + 1)],
                           "day": [first_day + 10 * v for k in range(patients) for v in range(k + 1)]})
    return Sequences(context, visits.assign(hb=visits["day"] / 10), "id", "day")


def test_pooled_sequences_are_rekeyed_in_site_order_with_their_visits():
    pooled = pool([_site(3, 0.0), _site(2, 1000.0)])
    assert pooled.context["id"].tolist() == [0, 1, 2, 3, 4]
    assert pooled.lengths().tolist() == [1, 2, 3, 1, 2]
    assert pooled.visits.loc[pooled.visits["id"] == 4, "day"].tolist() == [1000.0, 1010.0]


def test_sharded_sequences_keep_whole_patients_and_cover_the_pool_once():
    pooled = pool([_site(4, 0.0), _site(3, 0.0)])
    shards = [shard(pooled, k, 3) for k in range(3)]
    keys = sorted(k for s in shards for k in s.context["id"])
    assert keys == list(range(7)) and shards[1].context["id"].tolist() == [1, 4]
    for s in shards:
        assert set(s.visits["id"]) == set(s.context["id"])
        assert s.lengths().tolist() == [k % 4 + 1 if k < 4 else k - 3 for k in s.context["id"]]
    assert sum(len(s.visits) for s in shards) == len(pooled.visits)


def test_tables_pool_and_shard_by_rows_and_other_types_are_refused():
    a, b = pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": [3]})
    assert pool([a, b])["x"].tolist() == [1, 2, 3]
    assert shard(pool([a, b]), 1, 2)["x"].tolist() == [2]
    with pytest.raises(TypeError, match="no pooling for releases of type list"):
        pool([[1], [2]])
