"""Sources: each site gets only its own rows, ids and the site column are dropped, errors name the file."""
import numpy as np
import pandas as pd
import pytest

from hpcsynth.config import ConfigError, DataConfig
from hpcsynth.data.cohorts import COHORTS, load_cohort
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


def test_a_validation_share_of_the_training_rows_is_judged_and_the_held_out_rows_are_never_read():
    plain = load_site(DataConfig(builtin="mds", n_patients=500, holdout=0.2), 1, 3, seed=1)
    tuned = load_site(DataConfig(builtin="mds", n_patients=500, holdout=0.2, validation=0.25), 1, 3, seed=1)

    def rows(frame: pd.DataFrame) -> list[str]:
        return sorted(frame.astype(str).agg("|".join, axis=1))

    assert rows(pd.concat([tuned.train, tuned.holdout])) == rows(plain.train)  # both from the training rows
    assert not set(rows(tuned.holdout)) & set(rows(plain.holdout))
    assert 0.15 < len(tuned.holdout) / len(plain.train) < 0.35


def flchain_file(tmp_path) -> DataConfig:
    """flchain's published rows (three times of 0) as a user's CSV, declared as the cohort declares itself."""
    load_cohort("flchain").to_csv(tmp_path / "flchain.csv", index=False)
    return DataConfig(path=str(tmp_path / "flchain.csv"), time="futime", event="death", holdout=0.2,
                      categorical=list(COHORTS["flchain"].categorical))


def test_zero_times_follow_one_rule_for_the_named_cohort_and_for_its_rows_in_a_file(tmp_path, capsys):
    builtin = load_site(DataConfig(builtin="flchain", holdout=0.2), None, 1, seed=3)
    from_file = load_site(flchain_file(tmp_path), None, 1, seed=3)
    warned = capsys.readouterr().err.splitlines()
    rule = ": survival time column 'futime' (data.time) has 3 times of 0; set to 0.5 (data.zero_time)"
    assert [line.endswith(rule) for line in warned if "times of 0" in line] == [True, True]
    assert builtin.declared.zero_time_rows == from_file.declared.zero_time_rows == 3
    for part in ("train", "holdout"):
        mine, theirs = getattr(builtin, part)["futime"], getattr(from_file, part)["futime"]
        np.testing.assert_array_equal(mine.to_numpy(), theirs.to_numpy())
    assert (builtin.train["futime"] > 0).all() and (builtin.train["futime"] == 0.5).sum() + \
        (builtin.holdout["futime"] == 0.5).sum() == 3


def test_data_zero_time_sets_the_value_and_a_negative_time_is_an_error_naming_the_column(tmp_path):
    frame = pd.DataFrame({"t": [0.0, 0.0, 4.0, 9.0], "e": [1, 0, 1, 0]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = DataConfig(path=str(tmp_path / "t.csv"), time="t", event="e", holdout=0.0, zero_time=1.0)
    site = load_site(cfg, None, 1, seed=0)
    assert site.train["t"].tolist() == [1.0, 1.0, 4.0, 9.0] and site.declared.zero_time_rows == 2
    frame.assign(t=[0.0, -1.0, -2.0, 3.0]).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match="survival time column 't' \\(data.time\\) has 2 negative values"):
        load_site(cfg, None, 1, seed=0)


def test_a_sites_second_rank_does_not_count_the_zero_times_again(tmp_path):
    site = load_site(flchain_file(tmp_path), None, 1, seed=0)
    assert [site.shard(k, 2).declared.zero_time_rows for k in range(2)] == [3, 0]
