"""The `hpcsynth` command end to end: real mpiexec ranks, real run files, and failures that stop every rank."""
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pandas as pd
import pytest

from hpcsynth.data.mds import simulate_mds
from hpcsynth.io.inspect import load_synthetic
from hpcsynth.io.runfile import partial_path

FAIL_PROGRAM = Path(__file__).parent / "federated" / "programs" / "fail_mid_run.py"
CLI = [sys.executable, "-m", "hpcsynth.cli"]


def cli(*args, timeout=120):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def site_files(tmp_path, missing_site=None):
    frame = simulate_mds(n_patients=600, seed=5)
    paths = []
    for k, part in frame.groupby("site"):
        path = tmp_path / f"site{k}.csv"
        if k != missing_site:
            part.drop(columns=["site"]).to_csv(path, index=False)
        paths.append(str(path))
    return paths


@pytest.mark.mpi
@pytest.mark.slow
def test_three_ranks_train_compare_and_write_run_files(mpirun, write_job, tmp_path):
    job = write_job({"federation.strategy": ["centralized", "isolated", "fedavg"]})
    result = mpirun(3, [*CLI, "run", str(job)])
    assert result.returncode == 0, result.stderr
    assert "quality" in result.stdout and "fedavg" in result.stdout
    with h5py.File(tmp_path / "run.h5") as f:
        assert f.attrs["kind"] == "comparison" and f.attrs["status"] == "complete"
        assert sorted(f["runs"]) == ["centralized", "fedavg", "isolated"]
        table = pd.DataFrame(f["comparison"][()])
        assert (table["quality"] > 0.3).all() and (table["quality"] <= 1).all()
    for name in ("centralized", "isolated", "fedavg"):
        with h5py.File(tmp_path / f"run-{name}.h5") as f:
            assert f.attrs["status"] == "complete" and f.attrs["n_sites"] == 3
            assert "builtin: mds" in f["config"][()].decode()
            assert {"pooled", "site_0", "site_1", "site_2"} == set(f["synthetic"])
            sizes = [len(f["synthetic"][f"site_{k}"]["age"]) for k in range(3)]
            assert len(f["synthetic/pooled/age"]) == sum(sizes)
            rounds = f["rounds"][()]
            assert rounds["round"].tolist() == [0, 1]
            params = f["checkpoint/params"]
            assert params.shape[0] == (3 if name == "isolated" else 1)
            expected = {"isolated": 0, "fedavg": 4 * params.shape[1],
                        "centralized": 4 * params.shape[1] * int(rounds["steps"][0])}[name]
            assert rounds["bytes_reduced"].tolist() == [expected] * 2  # one Allreduce of one buffer per round
            assert 0 < f["evaluation"].attrs["quality"] <= 1
            assert f["evaluation/directions"].attrs["quality"] == "higher"
            assert f["shift/divergence"].shape == (3, len(f["schema"]) - 1)
        assert not partial_path(tmp_path / f"run-{name}.h5").exists()
    isolated = [load_synthetic(tmp_path / "run-isolated.h5", site=k) for k in range(3)]
    assert not isolated[0].equals(isolated[1])


@pytest.mark.mpi
def test_a_missing_site_file_stops_every_rank_with_its_message(mpirun, write_job, tmp_path):
    sites = site_files(tmp_path, missing_site=1)
    job = write_job({"data": {"sites": sites}})
    start = time.monotonic()
    result = mpirun(3, [*CLI, "run", str(job)], timeout=60)
    assert time.monotonic() - start < 30
    assert result.returncode != 0
    assert f"hpcsynth: error: rank 1: {sites[1]}: no such file" in result.stderr
    assert not (tmp_path / "run.h5").exists()


@pytest.mark.mpi
def test_a_rank_failing_mid_training_stops_every_rank(mpirun, write_job, tmp_path):
    job = write_job({"federation.rounds": 3})
    start = time.monotonic()
    result = mpirun(3, [sys.executable, str(FAIL_PROGRAM), str(job)], timeout=90, env={"FAILING_RANK": "2"})
    assert time.monotonic() - start < 60
    assert result.returncode != 0
    assert "hpcsynth: error: rank 2: injected failure" in result.stderr
    assert not (tmp_path / "run.h5").exists()
    partial = partial_path(tmp_path / "run.h5")
    if partial.exists():
        with h5py.File(partial) as f:
            assert f.attrs["status"] == "partial"


@pytest.mark.mpi
def test_a_config_error_is_reported_once_and_stops_every_rank(mpirun, write_job):
    job = write_job({"federation.rounds": 0})
    result = mpirun(3, [*CLI, "run", str(job)], timeout=60)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("hpcsynth: error")]
    assert errors == [f"hpcsynth: error: {job}: federation.rounds: must be at least 1, got 0"]


@pytest.mark.mpi
def test_more_ranks_than_declared_sites_is_a_config_error(mpirun, write_job):
    job = write_job({"data.n_sites": 3})
    result = mpirun(2, [*CLI, "run", str(job)], timeout=60)
    assert result.returncode != 0
    assert "data defines 3 sites but the job runs 2 ranks" in result.stderr


def test_one_process_centralized_pools_all_sites(write_job, tmp_path):
    job = write_job({"federation.strategy": "centralized"})
    result = cli("run", str(job))
    assert result.returncode == 0, result.stderr
    table = load_synthetic(tmp_path / "run.h5")
    assert len(table) == 600
    with h5py.File(tmp_path / "run.h5") as f:
        assert f["rounds"]["bytes_reduced"].tolist() == [0, 0]


def test_one_process_fedavg_over_three_sites_asks_for_mpiexec(write_job):
    result = cli("run", str(write_job()))
    assert result.returncode == 2
    assert "needs one rank per site: run under `mpiexec -n 3`" in result.stderr


def test_inspect_and_export_read_the_run_file(write_job, tmp_path):
    job = write_job({"federation.strategy": "centralized", "data.n_sites": 1})
    assert cli("run", str(job), "--out", str(tmp_path / "other.h5")).returncode == 0
    shown = cli("inspect", str(tmp_path / "other.h5"))
    assert shown.returncode == 0 and "strategy: centralized" in shown.stdout and "quality" in shown.stdout
    out = tmp_path / "table.csv"
    assert cli("export", str(tmp_path / "other.h5"), "--out", str(out)).returncode == 0
    exported = pd.read_csv(out)
    assert "patient_id" not in exported and "site" not in exported
    assert set(exported["cyto_risk"].dropna()) <= {"very_good", "good", "intermediate", "poor", "very_poor"}
    assert set(exported["sex"].dropna()) <= {"M", "F"}
    assert len(exported) == 600


def test_inspect_names_a_file_that_is_not_a_run(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    result = cli("inspect", str(junk))
    assert result.returncode == 2 and f"{junk}: not an HDF5 run file" in result.stderr


def test_datasets_list_and_export(tmp_path):
    assert "mds" in cli("datasets", "list").stdout
    out = tmp_path / "mds.csv"
    result = cli("datasets", "export", "mds", "--out", str(out), "--n-patients", "300")
    assert result.returncode == 0
    frame = pd.read_csv(out)
    assert len(frame) == 300 and {"ipssr_category", "SF3B1", "os_months"} <= set(frame.columns)
