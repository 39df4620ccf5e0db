"""Sources: each site gets only its own rows, ids and the site column are dropped, errors name the file."""
import numpy as np
import pandas as pd
import pytest

from hpcsynth.config import ConfigError, DataConfig
from hpcsynth.data.mds import simulate_mds
from hpcsynth.data.schema import DataError
from hpcsynth.data.sources import load_site, read_table, split_holdout


def test_builtin_site_gets_only_its_rows_without_ids():
    cfg = DataConfig(builtin="mds", n_patients=500, holdout=0.2)
    full = simulate_mds(n_patients=500, seed=1)
    site = load_site(cfg, 1, 3, seed=1)
    assert "patient_id" not in site.train and "site" not in site.train
    assert len(site.train) + len(site.holdout) == int((full["site"] == 1).sum())
    assert site.time == "os_months" and site.event == "os_event" and "cyto_risk" in site.categorical
    pooled = load_site(cfg, None, 3, seed=1)
    assert len(pooled.train) + len(pooled.holdout) == 500


def test_site_column_splits_one_table_in_sorted_order(tmp_path):
    frame = pd.DataFrame({"hospital": ["b", "a", "b", "c", "a"], "x": [1.0, 2.0, 3.0, 4.0, 5.0], "pid": range(5)})
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = DataConfig(path=str(tmp_path / "t.csv"), site_column="hospital", holdout=0.0, id=["pid"])
    site_a = load_site(cfg, 0, 3, seed=0)
    assert site_a.train["x"].tolist() == [2.0, 5.0] and list(site_a.train.columns) == ["x"]
    with pytest.raises(DataError, match="has 3 distinct values but the job has 2 sites"):
        load_site(cfg, 0, 2, seed=0)
    with pytest.raises(ConfigError, match="data.site_column: needed"):
        load_site(DataConfig(path=str(tmp_path / "t.csv")), 0, 3, seed=0)


def test_one_file_per_site_and_parquet(tmp_path):
    pd.DataFrame({"x": [1.0, 2.0]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"x": [3.0, 4.0, 5.0]}).to_csv(tmp_path / "b.csv", index=False)
    cfg = DataConfig(sites=[str(tmp_path / "a.parquet"), str(tmp_path / "b.csv")], holdout=0.0)
    assert load_site(cfg, 1, 2, seed=0).train["x"].tolist() == [3.0, 4.0, 5.0]
    assert len(load_site(cfg, None, 2, seed=0).train) == 5


@pytest.mark.parametrize("name, content, message", [
    ("missing.csv", None, "no such file"),
    ("dir", "DIR", "is a directory"),
    ("table.xlsx", "x\n1\n", "unknown file type"),
    ("empty.csv", "", "empty file"),
])
def test_unreadable_sources_are_named(tmp_path, name, content, message):
    path = tmp_path / name
    if content == "DIR":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=f"{path}: {message}"):
        read_table(path)


def test_header_only_site_has_no_rows(tmp_path):
    (tmp_path / "h.csv").write_text("x,y\n")
    with pytest.raises(DataError, match="h.csv \\(site 0\\): no rows"):
        load_site(DataConfig(sites=[str(tmp_path / "h.csv")]), 0, 1, seed=0)


def test_holdout_split_is_reproducible_and_site_specific():
    frame = pd.DataFrame({"x": np.arange(1000.0)})
    a1, h1 = split_holdout(frame, 0.2, 0, 0)
    a2, h2 = split_holdout(frame, 0.2, 0, 0)
    assert h1.equals(h2) and 150 < len(h1) < 250
    assert not split_holdout(frame, 0.2, 0, 1)[1].equals(h1)
