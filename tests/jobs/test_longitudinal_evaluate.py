"""`hpcsynth evaluate` on a longitudinal job's comparison file: under `mpiexec -n 3` and in one process it prints the
numbers the job printed, rewrites each run file's /evaluation (and only that) without leaving a temporary file,
and writes a report whose three temporal figures per strategy a headless browser draws."""
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml

from evaluate.test_report import DRAWN, _browser
from mpi_support import REPO, mpiexec_path

CLI = [sys.executable, "-m", "hpcsynth.cli"]
STRATEGIES = ("isolated", "fedavg")
JOB = {"seed": 0, "data": {"builtin": "mds_followup", "n_patients": 240, "holdout": 0.25},
       "model": {"name": "sequence_vae", "batch_size": 100, "hidden": [32, 32], "latent_dim": 8, "gru_dim": 16},
       "federation": {"strategy": list(STRATEGIES), "rounds": 2, "local_epochs": 1}, "progress": False}


def _mpirun(n: int, args: list[str], timeout: float):
    return subprocess.run([mpiexec_path(), "-n", str(n), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def _table(printed: str) -> list[str]:
    """The printed strategy table: its header and one line per strategy, as printed."""
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["strategy"])
    return lines[start:start + 1 + len(STRATEGIES)]


def _evaluation(path) -> dict:
    """Every attribute under /evaluation, by group."""
    found = {}
    with h5py.File(path, "r") as f:
        f["evaluation"].visititems(lambda name, obj: found.update({name: dict(obj.attrs)}))
        found[""] = dict(f["evaluation"].attrs)
    return found


def _tamper(path) -> None:
    """Overwrite a stored score and drop the per-site scores, which an evaluation must restore."""
    with h5py.File(path, "r+") as f:
        f["evaluation"].attrs["visit_column_shapes"] = -1.0
        if "sites" in f["evaluation"]:
            del f["evaluation/sites"]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A tiny longitudinal job (3 sites, isolated and fedavg) run under mpiexec: (folder, printed table, stored
    /evaluation of every run, rounds and run id of every run)."""
    folder = tmp_path_factory.mktemp("longitudinal")
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump({**JOB, "output": str(folder / "run.h5")}))
    done = _mpirun(3, [*CLI, "run", str(path)], timeout=500)
    assert done.returncode == 0, done.stderr
    stored, kept = {}, {}
    for name in STRATEGIES:
        run = folder / f"run-{name}.h5"
        stored[name] = _evaluation(run)
        with h5py.File(run, "r") as f:
            kept[name] = (f["rounds"][()], f.attrs["run_id"], f["synthetic/pooled/visits/hb"][()])
    return folder, _table(done.stdout), stored, kept


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("where", ["mpiexec -n 3", "one process"])
def test_evaluate_gives_the_jobs_numbers_and_rewrites_only_the_evaluation(job, where):
    folder, printed, stored, kept = job
    for name in STRATEGIES:
        _tamper(folder / f"run-{name}.h5")
    args = [*CLI, "evaluate", str(folder / "run.h5"), "--out", str(folder / f"{where}.html")]
    done = _mpirun(3, args, timeout=500) if where.startswith("mpiexec") else \
        subprocess.run(args, capture_output=True, text=True, timeout=500, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert _table(done.stdout) == printed  # every number as the job printed it, the wall time included
    assert f"report: {folder / f'{where}.html'}" in done.stdout
    for name in STRATEGIES:
        run = folder / f"run-{name}.h5"
        assert _evaluation(run) == stored[name], name  # exactly the job's scores, the per-site ones restored
        with h5py.File(run, "r") as f:
            rounds, run_id, hb = kept[name]
            assert f["rounds"][()].tobytes() == rounds.tobytes() and f.attrs["run_id"] == run_id
            assert np.array_equal(f["synthetic/pooled/visits/hb"][()], hb, equal_nan=True)
    assert len(stored["isolated"]) == 1 + 1 + 1 + 3  # scores, worst, sites and each site's scores
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temporary copy left behind


@pytest.mark.mpi
@pytest.mark.slow
def test_the_report_draws_the_three_temporal_figures_of_every_strategy(job, tmp_path):
    folder = job[0]
    out = tmp_path / "report.html"
    done = _mpirun(3, [*CLI, "evaluate", str(folder / "run.h5"), "--out", str(out)], timeout=500)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "held-out patients of site 0" in text and "higher is better" in text and "lower is better" in text
    for alt in ("spaghetti plots", "lab profiles over time", "lengths and intervals"):
        assert text.count(f'alt="{alt}"') == len(STRATEGIES), alt
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium on PATH and no root apt-get to install it")
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", DRAWN))
    shown = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                            "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    drawn = re.search(r'data-drawn="(\d+)"', shown.stdout)
    assert drawn is not None, shown.stderr[-2000:]
    assert int(drawn.group(1)) == 3 * len(STRATEGIES)
    assert "Each site alone" in shown.stdout and "Strategy comparison" in shown.stdout


@pytest.mark.mpi
@pytest.mark.slow
def test_real_rows_are_refused_for_a_longitudinal_run_in_one_line(job):
    folder = job[0]
    done = subprocess.run([*CLI, "evaluate", str(folder / "run.h5"), "--real", "rows.csv"], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert errors == [f"hpcsynth: error: evaluate: --real is not supported for longitudinal runs yet "
                      f"({folder / 'run.h5'} holds visit sequences)"]
