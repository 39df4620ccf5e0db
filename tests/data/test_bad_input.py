"""Malformed input, each case run for real twice: under `mpiexec -n 3` (one file per site, the bad one at site 1)
and in one process (the pooled centralized baseline). Each must give one clear line naming the file, column or
option, a non-zero exit on every rank within seconds, and no run file; the cases that are handled instead give
one warning and finish."""
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hpcsynth.data.mds import simulate_mds

CLI = [sys.executable, "-m", "hpcsynth.cli", "run"]


@dataclass
class Case:
    """A bad site-1 file (made by `damage`) or a bad option, and the words the error must contain."""

    expect: str
    damage: Callable[[pd.DataFrame, Path], None] | None = None
    options: dict = field(default_factory=dict)
    all_sites: bool = False
    handled: bool = False


def write(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False)


def text(content: str | bytes) -> Callable[[pd.DataFrame, Path], None]:
    def damage(frame: pd.DataFrame, path: Path) -> None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return damage


def edit(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[pd.DataFrame, Path], None]:
    def damage(frame: pd.DataFrame, path: Path) -> None:
        write(change(frame.copy()), path)
    return damage


def set_value(column: str, value, row: int = 3) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame
    return change


def directory(frame: pd.DataFrame, path: Path) -> None:
    path.mkdir()


def vanished(frame: pd.DataFrame, path: Path) -> None:
    return None


CASES = {
    "empty file": Case("empty file", text("")),
    "header only": Case("no rows", text("age,sex,hb\n")),
    "missing declared column": Case("column 'os_time' (data.time) not found", options={"time": "os_time"}),
    "sites with different columns": Case("different columns", edit(lambda f: f.drop(columns=["hb"]))),
    "site column with too few sites": Case("has 2 distinct values but the job has 3 sites", options={"split": True}),
    "all-missing column": Case("column 'extra': all values are missing on every site",
                               edit(lambda f: f.assign(extra=np.nan)), all_sites=True),
    "mixed types in a column": Case("column 'hb' mixes numbers and text", edit(set_value("hb", "<5"))),
    "infinite number": Case("column 'plt' has 1 infinite values", edit(set_value("plt", np.inf))),
    "negative survival time": Case("survival time column 'os_months' (data.time) has 1 negative values",
                                   edit(set_value("os_months", -3.0))),
    "zero survival time": Case("survival time column 'os_months' (data.time) has 1 times of 0; set to 0.5 "
                               "(data.zero_time)", edit(set_value("os_months", 0.0)), handled=True),
    "text survival time": Case("survival time column 'os_months' (data.time) holds non-numbers",
                               edit(set_value("os_months", "soon")), options={"categorical": ["os_months"]}),
    "event outside 0/1": Case("event column 'os_event' (data.event) must be 0 or 1; found [2]",
                              edit(set_value("os_event", 2))),
    "event as text": Case("event column 'os_event' (data.event) must be 0 or 1; found ['dead']",
                          edit(set_value("os_event", "dead"))),
    "duplicate column names": Case("duplicate column names ['hb']", text("age,hb,hb\n70,9.5,9.6\n")),
    "unreadable encoding": Case("not UTF-8 text", text(b"age,sex\n70,M\n71,\xe9\xe8\n")),
    "ragged rows": Case("cannot be read as csv", text("age,hb\n70,9.5\n71,9.6,3,4\n")),
    "path is a directory": Case("is a directory", directory),
    "missing file": Case("no such file", vanished),
    "unknown file type": Case("unknown file type '.xlsx'", options={"suffix": ".xlsx"}),
    "corrupt parquet": Case("cannot be read as parquet", text("not parquet"), options={"suffix": ".parquet"}),
    "missing site column": Case("site column 'hospital' not found", options={"split": True, "site_column": "hospital"}),
    "missing id column": Case("id column 'pid' (data.id) not found", options={"id": ["pid"]}),
    "missing categorical column": Case("column 'grade' (data.categorical) not found",
                                       options={"categorical": ["grade"]}),
    "missing kind column": Case("column 'visit' (data.kinds.visit) not found",
                                options={"kinds": {"visit": "datetime"}}),
    "unknown kind": Case("data.kinds.hb: unknown kind 'float'", options={"kinds": {"hb": "float"}}),
    "constant column": Case("column 'ward' has a single value on every site", edit(lambda f: f.assign(ward="A")),
                            all_sites=True, handled=True),
    "more levels than rows": Case("column 'note' has", edit(lambda f: f.assign(note=[f"n{i}" for i in range(len(f))])),
                                  all_sites=True, handled=True),
    "missing values as NaN": Case("", edit(set_value("hb", np.nan)), handled=True),
}


def make_job(tmp_path: Path, case: Case) -> tuple[Path, Path]:
    """Three site files (site 1 damaged) or one table, and a tiny job reading them."""
    cohort = simulate_mds(n_patients=450, seed=2).drop(columns=["patient_id"])
    opts = dict(case.options)
    data = {"time": opts.pop("time", "os_months"), "event": "os_event", "holdout": 0.2,
            "categorical": opts.pop("categorical", ["sex", "cyto_risk", "ipssr_category"]), **opts}
    if data.pop("split", False):
        table = tmp_path / "cohort.csv"
        write(cohort[cohort["site"] < 2], table)
        data.update(path=str(table), site_column=data.get("site_column", "site"), n_sites=3)
    else:
        suffix = data.pop("suffix", ".csv")
        paths = [tmp_path / f"site{k}{suffix if k == 1 else '.csv'}" for k in range(3)]
        for k, path in enumerate(paths):
            part = cohort[cohort["site"] == k].drop(columns=["site"]).reset_index(drop=True)
            bad = case.damage is not None and (k == 1 or case.all_sites)
            (case.damage if bad else write)(part, path)
        data["sites"] = [str(p) for p in paths]
    job = {"seed": 0, "data": data, "model": {"batch_size": 100, "hidden": [16, 16], "latent_dim": 4},
           "federation": {"strategy": "fedavg", "rounds": 1, "local_epochs": 1}, "progress": False,
           "output": str(tmp_path / "run.h5")}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path, tmp_path / "run.h5"


def check(result: subprocess.CompletedProcess, case: Case, output: Path, seconds: float) -> None:
    if case.handled:
        assert result.returncode == 0, result.stderr
        assert case.expect in result.stderr
        return
    errors = [line for line in result.stderr.splitlines() if line.startswith("hpcsynth: error")]
    assert result.returncode != 0
    assert len(errors) == 1 and case.expect in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert seconds < 30
    assert not output.exists()


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_under_mpiexec_stops_every_rank(name, mpirun, tmp_path):
    case = CASES[name]
    job, output = make_job(tmp_path, case)
    start = time.monotonic()
    result = mpirun(3, [*CLI, str(job)], timeout=120)
    check(result, case, output, time.monotonic() - start)


def run_in_this_process(job: Path, capsys) -> subprocess.CompletedProcess:
    """`hpcsynth run job.yaml` through the command's own entry point in this process: the path a run without a
    launcher takes, without an interpreter start per case (the mpiexec cases above start real processes)."""
    from hpcsynth.cli import main

    code = 0
    try:
        main(["run", str(job)])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["hpcsynth", "run", str(job)], code, captured.out, captured.err)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_in_one_process(name, tmp_path, capsys):
    case = CASES[name]
    job, output = make_job(tmp_path, case)
    spec = yaml.safe_load(job.read_text())
    spec["federation"]["strategy"] = "centralized"
    job.write_text(yaml.safe_dump(spec))
    start = time.monotonic()
    check(run_in_this_process(job, capsys), case, output, time.monotonic() - start)


@pytest.mark.mpi
@pytest.mark.slow
def test_a_site_file_that_vanishes_mid_run_does_not_matter(mpirun, tmp_path):
    """Each rank reads its rows once, at the start: deleting the file while the job trains changes nothing."""
    job, output = make_job(tmp_path, Case(""))
    spec = yaml.safe_load(job.read_text())
    spec["federation"].update(rounds=40)
    job.write_text(yaml.safe_dump(spec))
    from mpi_support import REPO, mpiexec_path

    process = subprocess.Popen([mpiexec_path(), "-n", "3", *CLI, str(job)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    partial = output.with_name("run.partial.h5")
    deadline = time.monotonic() + 60
    while not partial.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    Path(spec["data"]["sites"][1]).unlink()
    assert process.wait(timeout=120) == 0, process.stderr.read()
    assert output.exists()
