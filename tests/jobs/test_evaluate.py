"""`hpcsynth evaluate` end to end: a real run file gets every score, its direction and a report; under
`mpiexec -n 3` every site scores its own rows and the exact figures equal the one-process (pooled) ones."""
import subprocess
import sys

import h5py
import pytest

from hpcsynth.evaluate.metrics import METRICS

CLI = [sys.executable, "-m", "hpcsynth.cli"]


def _scores(path):
    with h5py.File(path, "r") as f:
        ev = f["evaluation"]
        return dict(ev.attrs), dict(ev["directions"].attrs), dict(ev["notes"].attrs)


def test_evaluate_a_run_file_in_one_process_and_with_real_rows_from_a_file(write_job, tmp_path):
    job = write_job({"data.n_patients": 300, "federation.strategy": "centralized", "federation.rounds": 1})
    assert subprocess.run([*CLI, "run", str(job)], capture_output=True, timeout=300).returncode == 0
    run = tmp_path / "run.h5"
    done = subprocess.run([*CLI, "evaluate", str(run)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "csf" in done.stdout and f"report: {tmp_path / 'run.html'}" in done.stdout
    scores, directions, notes = _scores(run)
    assert {"fidelity", "wall_s", "csf", "gsf", "detection_auroc", "membership_auroc", "cindex_tstr"} <= set(scores)
    assert all(directions[k] == METRICS[k].direction for k in scores) and "km_worst_group" in notes
    with h5py.File(run, "r") as f:
        curves = f["evaluation/curves"]
        assert curves["km/real/all"].shape == curves["km/grid"].shape
        assert "SF3B1" in curves["genes/names"][()].astype(str)
    assert (tmp_path / "run.html").stat().st_size > 10_000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.h5")]  # no temporary file left
    real = tmp_path / "real.csv"
    subprocess.run([*CLI, "datasets", "export", "mds", "--n-patients", "200", "--seed", "9", "--out", str(real)],
                   check=True, capture_output=True, timeout=120)
    again = subprocess.run([*CLI, "evaluate", str(run), "--real", str(real), "--out", str(tmp_path / "r.html")],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert _scores(run)[0]["column_shapes"] != scores["column_shapes"] and (tmp_path / "r.html").exists()
    declared = subprocess.run([*CLI, "evaluate", str(run), "--quasi", "age,hb,plt", "--sensitive", "SF3B1"],
                              capture_output=True, text=True, timeout=300)
    assert declared.returncode == 0, declared.stderr
    assert _scores(run)[0]["k_anonymity"] < scores["k_anonymity"]  # three continuous quasi-identifiers: unique rows
    wrong = subprocess.run([*CLI, "evaluate", str(run), "--quasi", "shoe_size"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "column 'shoe_size' (--quasi/--sensitive) not in the run's schema" in wrong.stderr


@pytest.mark.slow
@pytest.mark.mpi
def test_federated_evaluation_under_mpiexec_equals_one_process(mpirun, write_job, tmp_path):
    job = write_job({"data.n_patients": 300, "federation.rounds": 1})
    assert mpirun(3, [*CLI, "run", str(job)]).returncode == 0
    run = tmp_path / "run.h5"
    done = mpirun(3, [*CLI, "evaluate", str(run), "--out", str(tmp_path / "mpi.html")], timeout=300)
    assert done.returncode == 0, done.stderr
    federated = _scores(run)[0]
    assert subprocess.run([*CLI, "evaluate", str(run)], capture_output=True, timeout=300).returncode == 0
    pooled = _scores(run)[0]
    for key in ("column_shapes", "column_pair_trends", "km_max_gap", "gene_frequency_similarity", "gsf",
                "fairness_fidelity_min"):
        assert federated[key] == pytest.approx(pooled[key], abs=1e-9), key
    # a site measures distances to its own training rows; one process to every site's: never farther
    assert federated["dcr_synthetic_p5"] >= pooled["dcr_synthetic_p5"]
