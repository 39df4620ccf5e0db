"""A site's patients as visits: only its own patients, split by patient, from a named cohort, one long table or a
file per site; and the bad inputs of longitudinal data, each run under `mpiexec -n 3` (the bad file at site 1):
every rank stops with the same one line, the job exits non-zero within seconds, nothing hangs."""
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hpcsynth.config import from_dict
from hpcsynth.data.mds_followup import simulate_mds_followup
from hpcsynth.data.schema import DataError
from hpcsynth.data.sequence_sources import count_sequence_sites, is_longitudinal, load_site_sequences

PROGRAM = Path(__file__).with_name("programs") / "sequence_sites.py"


SEQUENCE_MODEL = {"name": "sequence_vae"}  # visit data go with a sequence generator


def data_config(**data):
    return from_dict({"data": data, "model": SEQUENCE_MODEL}).data


@pytest.fixture(scope="module")
def followup():
    return simulate_mds_followup(n_patients=90, n_sites=3, seed=5)


def long_table(seqs) -> pd.DataFrame:
    return seqs.visits.merge(seqs.context, on=seqs.key)


def site_files(tmp_path: Path, seqs, damage=None) -> list[str]:
    """One long CSV per site (the site column dropped); `damage` edits site 1's table."""
    table = long_table(seqs)
    paths = []
    for k in range(3):
        part = table[table["site"] == k].drop(columns=["site"]).reset_index(drop=True)
        if damage is not None and k == 1:
            part = damage(part, table)
        path = tmp_path / f"site{k}.csv"
        part.to_csv(path, index=False)
        paths.append(str(path))
    return paths


def test_a_named_cohort_splits_by_its_site_column_and_every_patient_keeps_all_visits(followup):
    cfg = data_config(builtin="mds_followup", n_patients=90, holdout=0.25)
    assert is_longitudinal(cfg) and count_sequence_sites(cfg) == 3
    full = simulate_mds_followup(n_patients=90, n_sites=3, seed=0)
    seen = []
    for site in range(3):
        data = load_site_sequences(cfg, site, 3, seed=0)
        both = pd.concat([data.train.context, data.holdout.context])
        expected = full.context[full.context["site"] == site]["patient_id"]
        assert sorted(both["patient_id"]) == sorted(expected)
        assert "site" not in data.train.context.columns
        assert set(data.train.context["patient_id"]).isdisjoint(data.holdout.context["patient_id"])
        for part in (data.train, data.holdout):
            mine = full.visits[full.visits["patient_id"].isin(part.context["patient_id"])]
            assert len(part.visits) == len(mine)
        seen.extend(both["patient_id"])
    assert len(seen) == len(set(seen)) == 90


def test_the_held_out_patients_repeat_for_the_same_seed_and_change_with_another():
    cfg = data_config(builtin="pbcseq", holdout=0.3)
    first = load_site_sequences(cfg, None, 1, seed=3).holdout.context["id"].tolist()
    again = load_site_sequences(cfg, None, 1, seed=3).holdout.context["id"].tolist()
    other = load_site_sequences(cfg, None, 1, seed=4).holdout.context["id"].tolist()
    assert first == again and first != other
    assert 0.2 < len(first) / 312 < 0.4


def test_a_partitioner_assigns_patients_not_visits():
    cfg = data_config(builtin="pbcseq", n_sites=3, partition={"kind": "covariate", "column": "age"})
    sites = [load_site_sequences(cfg, k, 3, seed=0) for k in range(3)]
    ages = [pd.concat([s.train.context, s.holdout.context])["age"] for s in sites]
    assert ages[0].max() <= ages[1].min() and ages[1].max() <= ages[2].min()
    assert sum(len(s.train.visits) + len(s.holdout.visits) for s in sites) == 1945
    assert sites[0].partition["sizes"] == [104, 104, 104]


def test_cgd_centres_are_sites_when_the_job_has_thirteen_and_an_iid_split_otherwise():
    by_centre = load_site_sequences(data_config(builtin="cgd", n_sites=13, holdout=0.0), 0, 13, seed=0)
    assert by_centre.partition == {"kind": "column", "column": "center"}
    three = load_site_sequences(data_config(builtin="cgd", n_sites=3, holdout=0.0), 0, 3, seed=0)
    assert three.partition["kind"] == "iid" and sum(three.partition["sizes"]) == 128
    assert "center" in three.train.context.columns  # not the site column here: an ordinary static column


def test_a_long_table_with_dates_and_a_site_column(tmp_path, followup):
    table = long_table(followup)
    table["visit"] = (pd.Timestamp("2020-03-01") + pd.to_timedelta(table["day"], unit="D")).astype(str)
    path = tmp_path / "visits.csv"
    table.drop(columns=["day"]).to_csv(path, index=False)
    cfg = data_config(path=str(path), sequence={"key": "patient_id", "index": "visit"}, context=["age", "sex"],
                      site_column="site", n_sites=3, holdout=0.0)
    data = load_site_sequences(cfg, 2, 3, seed=0)
    expected = followup.visits[followup.visits["patient_id"].isin(data.train.context["patient_id"])]
    assert np.array_equal(data.train.visits["visit"].to_numpy(), expected["day"].to_numpy())
    assert data.train.context_columns == ["age", "sex"]


def test_a_site_column_that_varies_within_a_patient_is_refused(tmp_path, followup):
    table = long_table(followup)
    table.loc[1, "site"] = (table.loc[1, "site"] + 1) % 3
    path = tmp_path / "visits.csv"
    table.to_csv(path, index=False)
    cfg = data_config(path=str(path), sequence={"key": "patient_id", "index": "day"}, site_column="site", n_sites=3)
    with pytest.raises(DataError, match=f"context column 'site' .* not constant within patient "
                                        f"'{table.loc[1, 'patient_id']}'"):
        load_site_sequences(cfg, 0, 3, seed=0)


def test_declared_columns_are_checked_in_the_table_that_holds_them(tmp_path, followup):
    paths = site_files(tmp_path, followup)
    base = {"sites": paths, "sequence": {"key": "patient_id", "index": "day"}, "context": ["age", "sex"]}
    with pytest.raises(DataError, match=r"site1.csv \(site 1\): column 'grade' \(data.categorical\) not found"):
        load_site_sequences(data_config(**base, categorical=["grade"]), 1, 3, seed=0)
    with pytest.raises(DataError, match=r"column 'hb' \(data.time\) a per-visit column"):
        load_site_sequences(data_config(**base, time="hb"), 1, 3, seed=0)
    pooled = load_site_sequences(data_config(**base, holdout=0.0), None, 3, seed=0)
    assert pooled.train.n_patients == 90


def test_levels_that_end_follow_up_are_declared_and_checked_in_the_data(tmp_path, followup):
    assert load_site_sequences(data_config(builtin="mds_followup", n_patients=60), 0, 3, seed=0).declared.ends == \
        {"aml": [1]}
    table = long_table(followup)
    path = tmp_path / "visits.csv"
    table.to_csv(path, index=False)
    base = {"path": str(path), "context": ["age", "sex"], "holdout": 0.0}
    cfg = data_config(**base, sequence={"key": "patient_id", "index": "day", "ends": {"aml": [1]}})
    assert load_site_sequences(cfg, None, 1, seed=0).declared.ends == {"aml": [1]}
    with pytest.raises(DataError, match=r"visits.csv: column 'stage' \(data.sequence.ends\) is not a per-visit"):
        load_site_sequences(data_config(**base, sequence={"key": "patient_id", "index": "day",
                                                          "ends": {"stage": [4]}}), None, 1, seed=0)
    progressed = table.loc[table["aml"] == 1, "patient_id"].iloc[0]
    extra = table[table["patient_id"] == progressed].tail(1).assign(day=lambda f: f["day"] + 30, aml=0)
    pd.concat([table, extra]).to_csv(path, index=False)
    with pytest.raises(DataError, match=f"patient {progressed!r} has visits after one at a level of "
                                        r"data.sequence.ends \(aml: 1\), which ends follow-up"):
        load_site_sequences(cfg, None, 1, seed=0)


def test_pooled_site_files_refuse_a_patient_in_two_files(tmp_path, followup):
    paths = site_files(tmp_path, followup, damage=lambda part, table: pd.concat(
        [part, table[table["patient_id"] == table["patient_id"].iloc[0]].drop(columns=["site"])]))
    cfg = data_config(sites=paths, sequence={"key": "patient_id", "index": "day"}, context=["age", "sex"])
    with pytest.raises(DataError, match="1 patients have visits in more than one site file"):
        load_site_sequences(cfg, None, 3, seed=0)


# -- under mpiexec ------------------------------------------------------------------------------------------------
def _first_patient(part: pd.DataFrame) -> pd.Series:
    return part["patient_id"] == part["patient_id"].iloc[0]


def _set(column, value, row=2):
    def damage(part, table):
        part[column] = part[column].astype(object)
        part.loc[row, column] = value
        return part
    return damage


MPI_CASES = {
    "patient on two sites": ("patients have visits on more than one site (sites 0 and 1 share 1)",
                             lambda part, table: pd.concat([part, table[table["site"] == 0].pipe(
                                 lambda f: f[_first_patient(f)]).drop(columns=["site"])], ignore_index=True)),
    "duplicate (key, index)": ("duplicate (key, index) ('patient_id', 'day')",
                               lambda part, table: pd.concat([part, part.iloc[[1]]], ignore_index=True)),
    "missing index": ("index column 'day' (data.sequence.index) is not monotone after sorting", _set("day", np.nan)),
    "index neither days nor dates": ("holds values that are neither numbers of days nor dates, such as ['soon']",
                                     _set("day", "soon")),
    "context varies within a patient": ("context column 'sex' (data.context) is not constant within patient",
                                        lambda part, table: part.assign(sex=np.where(
                                            _first_patient(part) & (part["day"] > 0), "X", part["sex"]))),
}


def _check_every_rank_stopped(result, expect: str, seconds: float) -> None:
    raised = re.findall(r"<<rank \d raised: (.*?)>>", result.stdout)
    errors = [line for line in result.stderr.splitlines() if line.startswith("hpcsynth: error")]
    assert result.returncode != 0, result.stdout + result.stderr
    assert len(raised) == 3 and len(set(raised)) == 1 and expect in raised[0], result.stdout + result.stderr
    assert len(errors) == 1 and expect in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert seconds < 60


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("name", list(MPI_CASES))
def test_bad_visits_stop_every_rank_with_the_same_line(name, mpirun, tmp_path, followup):
    expect, damage = MPI_CASES[name]
    job = {"seed": 0, "progress": False, "output": str(tmp_path / "run.h5"), "model": SEQUENCE_MODEL,
           "data": {"sites": site_files(tmp_path, followup, damage), "holdout": 0.2,
                    "sequence": {"key": "patient_id", "index": "day"}, "context": ["age", "sex", "ipssr_category"]}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    start = time.monotonic()
    result = mpirun(3, [sys.executable, str(PROGRAM), str(path)], timeout=120)
    _check_every_rank_stopped(result, expect, time.monotonic() - start)


@pytest.mark.mpi
@pytest.mark.slow
def test_a_patient_without_visits_stops_every_rank_with_the_same_line(mpirun):
    start = time.monotonic()
    result = mpirun(3, [sys.executable, str(PROGRAM), "--tables", "2"], timeout=120)
    _check_every_rank_stopped(result, "site1.csv: patient 's1-x0' has no visits (2 patients of the context table "
                                      "have none)", time.monotonic() - start)


@pytest.mark.mpi
@pytest.mark.slow
def test_good_site_files_load_on_every_rank(mpirun, tmp_path, followup):
    job = {"seed": 0, "model": SEQUENCE_MODEL, "data": {"sites": site_files(tmp_path, followup), "holdout": 0.2,
                               "sequence": {"key": "patient_id", "index": "day"}, "context": ["age", "sex"]}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    result = mpirun(3, [sys.executable, str(PROGRAM), str(path)], timeout=120)
    assert result.returncode == 0, result.stderr
    counts = sorted(int(n) for n in re.findall(r"loaded (\d+) patients", result.stdout))
    sizes = followup.context["site"].value_counts().sort_index().tolist()
    assert counts == sorted(sizes)


@pytest.mark.parametrize("data, message", [
    ({"path": "v.csv", "sequence": {"key": "pid"}}, "data.sequence.index: required"),
    ({"path": "v.csv", "sequence": {"key": "pid", "index": "t", "when": "x"}}, "data.sequence.when: unknown option"),
    ({"path": "v.csv", "sequence": {"key": "pid", "index": "t"}, "context": ["sex", "pid"]},
     "data.context: 'pid' is data.sequence.key"),
    ({"path": "v.csv", "context": ["sex"]}, "data.context: names the static columns of data.sequence"),
    ({"builtin": "mds", "sequence": {"key": "pid", "index": "t"}},
     "data.sequence: builtin mds has one row per patient"),
    ({"builtin": "pbcseq", "context": ["age"]}, "data.sequence: builtin pbcseq declares its own"),
    ({"path": "v.csv", "sequence": {"key": "pid", "index": "t", "ends": {"t": [1]}}},
     "data.sequence.ends.t: names a per-visit column"),
    ({"path": "v.csv", "sequence": {"key": "pid", "index": "t", "ends": {"sex": ["M"]}}, "context": ["sex"]},
     "data.sequence.ends.sex: names a per-visit column, not the key, the index or a context column"),
    ({"path": "v.csv", "sequence": {"key": "pid", "index": "t", "ends": {"state": []}}},
     "data.sequence.ends.state: expected a non-empty list"),
])
def test_sequence_options_are_refused_in_one_line_naming_the_key(data, message):
    from hpcsynth.messages import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        from_dict({"data": data, "model": SEQUENCE_MODEL}, "job.yaml")
