"""The run file: tables round-trip with names, kinds, labels and dtypes; writes are atomic."""
import json

import h5py
import numpy as np
import pandas as pd
import pytest

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.federated.records import RoundRecord
from hpcsynth.io.inspect import describe, load_synthetic
from hpcsynth.io.runfile import RunContent, atomic_write, write_run
from table_support import random_table


@pytest.fixture
def table():
    return pd.DataFrame({
        "age": [71.5, 64.0, np.nan, 80.2],
        "count": [3, 4, 5, 6],
        "sex": ["M", "F", None, "M"],
        "SF3B1": [0.0, 1.0, np.nan, 1.0],
    })


@pytest.fixture
def run(table):
    transformer = TableTransformer(categorical=["sex"]).fit(table)
    rounds = RoundRecord.table([RoundRecord(0, 3.5, 1.0, 0.8, 0.2, 1024, 7),
                                RoundRecord(1, 2.5, 1.1, 0.9, 0.2, 1024, 7)])
    return RunContent("seed: 0\n", "job.yaml", "fedavg", 2, transformer, synthetic={"pooled": table, "site_0": table},
                      rounds=rounds, checkpoint_params=np.ones((1, 5), np.float32), checkpoint_round=1,
                      local_states=[b"abc", b"de"], evaluation={"fidelity": 0.9},
                      evaluation_groups={"directions": {"fidelity": "higher"}})


def test_tables_round_trip_with_kinds_labels_and_missing_values(tmp_path, run, table):
    path = write_run(tmp_path / "r.h5", run)
    back = load_synthetic(path)
    assert list(back.columns) == list(table.columns)
    assert back["count"].dtype == np.int64 and back["count"].tolist() == [3, 4, 5, 6]
    assert back["sex"].isna().tolist() == [False, False, True, False]
    assert back["sex"].dropna().tolist() == ["M", "F", "M"]
    np.testing.assert_array_equal(back["age"], table["age"])
    np.testing.assert_array_equal(back["SF3B1"], table["SF3B1"])


def test_layout_is_readable_with_plain_h5py(tmp_path, run):
    path = write_run(tmp_path / "r.h5", run)
    with h5py.File(path) as f:
        assert f.attrs["status"] == "complete" and f.attrs["strategy"] == "fedavg"
        assert len(f.attrs["run_id"]) == 32 and f.attrs["run_id"] != h5py.File(write_run(tmp_path / "s.h5", run),
                                                                                 "r").attrs["run_id"]
        assert f["config"][()].decode() == "seed: 0\n" and "torch" in f["config"].attrs
        assert f["schema/sex"].attrs["kind"] == "categorical"
        assert f["synthetic/pooled/sex"].dtype == np.int64
        assert f["synthetic/pooled/sex"].attrs["labels"] == '["F", "M"]'
        assert f["synthetic/pooled/sex"][2] == -1
        assert pd.DataFrame(f["rounds"][()])["loss"].tolist() == [3.5, 2.5]
        assert f["checkpoint"].attrs["round"] == 1 and f["checkpoint/site_1"][()].tobytes() == b"de"
        assert f["evaluation"].attrs["fidelity"] == 0.9
    TableTransformer.from_state(h5py.File(path)["schema/transformer"][()].decode())


def test_stored_transformer_decodes_like_the_original(tmp_path, run, table):
    path = write_run(tmp_path / "r.h5", run)
    with h5py.File(path) as f:
        restored = TableTransformer.from_state(f["schema/transformer"][()].decode())
    matrix = run.transformer.encode(table)
    assert np.array_equal(restored.encode(table), matrix)
    a = run.transformer.decode(matrix, np.random.default_rng(0))
    b = restored.decode(matrix, np.random.default_rng(0))
    pd.testing.assert_frame_equal(a, b)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, run):
    path = write_run(tmp_path / "r.h5", run)
    before = path.read_bytes()

    def broken(f):
        f.create_dataset("x", data=[1])
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.h5"]


def test_describe_summarises_the_run(tmp_path, run):
    text = describe(write_run(tmp_path / "r.h5", run))
    assert "strategy: fedavg" in text and "status: complete" in text
    assert "fidelity" in text and "higher is better" in text and "checkpoint: round 1" in text


def test_synthetic_tables_come_back_in_the_input_dtypes_and_schema_records_them(tmp_path):
    frame = random_table(3)
    transformer = TableTransformer(categorical=["grade"]).fit(frame)
    content = RunContent("seed: 0\n", "job.yaml", "centralized", 1, transformer, synthetic={"pooled": frame})
    back = load_synthetic(write_run(tmp_path / "r.h5", content))
    pd.testing.assert_frame_equal(back, frame, check_exact=False, rtol=1e-6)
    with h5py.File(tmp_path / "r.h5") as f:
        assert json.loads(f["schema/grade"].attrs["dtype"])["name"] == "int64"
        assert json.loads(f["synthetic/pooled/visits"].attrs["dtype"])["name"] == "Int64"


def test_a_run_file_written_before_dtypes_were_stored_still_reads(tmp_path, run, table):
    path = write_run(tmp_path / "r.h5", run)
    with h5py.File(path, "r+") as f:
        for column in f["synthetic/pooled"].values():
            del column.attrs["dtype"]
    back = load_synthetic(path)
    assert back["count"].dtype == np.int64 and back["sex"].dropna().tolist() == ["M", "F", "M"]
    assert back["SF3B1"].dtype == np.float64


def test_schema_records_the_zero_time_rule_and_the_rows_it_changed(tmp_path):
    frame = pd.DataFrame({"t": [0.5, 0.5, 4.0, 9.0], "e": [1, 0, 1, 0], "x": [1.0, 2.0, 3.0, 4.0]})
    transformer = TableTransformer(time="t", event="e", zero_time=0.5, zero_time_rows=2).fit(frame)
    path = write_run(tmp_path / "r.h5", RunContent("seed: 0\n", "job.yaml", "centralized", 1, transformer))
    with h5py.File(path) as f:
        assert f["schema"].attrs["zero_time"] == 0.5 and f["schema"].attrs["zero_time_rows"] == 2
