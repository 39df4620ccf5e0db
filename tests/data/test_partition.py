"""Partitioners: reproducible, non-empty sites, and the heterogeneity each is meant to create."""
import numpy as np
import pandas as pd
import pytest

from hpcsynth.config import DataConfig, PartitionConfig
from hpcsynth.data.partition import Partition, assign_sites
from hpcsynth.data.schema import DataError
from hpcsynth.data.sources import load_site

RNG = np.random.default_rng(0)
FRAME = pd.DataFrame({"age": RNG.normal(65, 10, 3000), "label": RNG.choice(["a", "b", "c"], 3000, p=[0.5, 0.3, 0.2])})


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "covariate", "quantity"])
def test_every_partitioner_is_reproducible_and_fills_every_site(kind):
    p = Partition(kind, 5, column="age" if kind == "covariate" else "label", alpha=0.3, seed=1)
    sites = assign_sites(FRAME, p)
    assert sites.shape == (3000,) and set(sites) == set(range(5))
    assert np.array_equal(sites, assign_sites(FRAME, p))
    if kind != "covariate":  # quantile bands do not depend on the seed (only ties are broken at random)
        assert not np.array_equal(sites, assign_sites(FRAME, Partition(kind, 5, p.column, 0.3, seed=2)))


def test_iid_sites_are_equal_and_alike():
    sites = assign_sites(FRAME, Partition("iid", 3))
    assert np.bincount(sites).tolist() == [1000, 1000, 1000]
    shares = [FRAME["label"][sites == k].eq("a").mean() for k in range(3)]
    assert max(shares) - min(shares) < 0.08


def test_small_alpha_skews_labels_more_than_large_alpha():
    def skew(alpha):
        sites = assign_sites(FRAME, Partition("dirichlet", 4, "label", alpha, seed=3))
        table = pd.crosstab(sites, FRAME["label"], normalize="index")
        return float(table.std(axis=0).mean())
    assert skew(0.1) > 2 * skew(100.0)


def test_covariate_sites_are_ordered_bands_of_the_column():
    sites = assign_sites(FRAME, Partition("covariate", 3, "age"))
    bands = [FRAME["age"][sites == k] for k in range(3)]
    assert bands[0].max() <= bands[1].min() and bands[1].max() <= bands[2].min()


def test_quantity_skew_gives_unequal_sizes():
    sizes = np.bincount(assign_sites(FRAME, Partition("quantity", 4, alpha=0.5, seed=5)))
    assert sizes.max() > 2 * sizes.min()


def test_bad_partitions_name_the_option():
    with pytest.raises(DataError, match="data.partition.column: 'weight' not found"):
        assign_sites(FRAME, Partition("covariate", 3, "weight"))
    with pytest.raises(DataError, match="3000 rows cannot fill 5000 sites"):
        assign_sites(FRAME, Partition("iid", 5000))


def test_each_rank_materialises_only_its_part_and_the_split_is_recorded(tmp_path):
    FRAME.to_csv(tmp_path / "t.csv", index=False)
    cfg = DataConfig(path=str(tmp_path / "t.csv"), holdout=0.0,
                     partition=PartitionConfig(kind="covariate", column="age", n_sites=3))
    parts = [load_site(cfg, k, 3, seed=0) for k in range(3)]
    assert sum(len(p.train) for p in parts) == 3000
    assert parts[0].train["age"].max() <= parts[2].train["age"].min()
    assert parts[1].partition == {"kind": "covariate", "column": "age", "alpha": 0.5, "seed": 0,
                                  "sizes": [1000, 1000, 1000]}
