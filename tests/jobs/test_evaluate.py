"""`hpcsynth evaluate` end to end: a real run file gets every score, its direction and a report; the job, the
evaluation under `mpiexec -n 3` and in one process, `inspect` and the report all give the same numbers."""
import html
import subprocess
import sys

import h5py
import numpy as np
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
    assert {"quality", "wall_s", "csf", "gsf", "detection_auroc", "membership_auroc", "cindex_tstr",
            "whitebox_membership_auroc"} <= set(scores)
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


def _table(text: str) -> dict[str, dict[str, float]]:
    """{strategy label: {metric: value}} from a table the CLI prints (the summary table's layout)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["strategy"])
    keys = lines[start].split()[1:]
    rows = {}
    for line in lines[start + 1:]:
        if line.strip().startswith("(+ higher"):
            return rows
        words = line.split()
        rows[" ".join(words[:-len(keys)])] = dict(zip(keys, map(float, words[-len(keys):])))
    return rows


@pytest.mark.slow
@pytest.mark.mpi
def test_every_table_gives_the_same_number_for_the_same_strategy_and_metric(mpirun, write_job, tmp_path):
    """The job's table, `hpcsynth evaluate` under mpiexec and in one process, `inspect` and the report agree;
    isolated is one site alone everywhere, and /rounds holds the per-round scores."""
    job = write_job({"data.n_patients": 300, "federation.strategy": ["isolated", "fedavg"],
                     "federation.rounds": 2, "evaluation.every": 1})
    ran = mpirun(3, [*CLI, "run", str(job)], timeout=400)
    assert ran.returncode == 0, ran.stderr
    run = tmp_path / "run.h5"
    tables = {"job": _table(ran.stdout)}
    for name, command in (("mpi", lambda args: mpirun(3, args, timeout=400)),
                          ("one process", lambda args: subprocess.run(args, capture_output=True, text=True,
                                                                      timeout=400))):
        done = command([*CLI, "evaluate", str(run), "--out", str(tmp_path / "report.html"),
                        *(["--own-site"] if name == "one process" else [])])
        assert done.returncode == 0, done.stderr
        tables[name] = _table(done.stdout)
    assert "fedavg: A different question: does the release serve each hospital?" in done.stdout
    shown = subprocess.run([*CLI, "inspect", str(run)], capture_output=True, text=True, timeout=120)
    tables["inspect"] = _table(shown.stdout.split("comparison:", 1)[1])
    report = (tmp_path / "report.html").read_text()
    tables["report"] = _table(html.unescape(report.split("<pre>", 1)[1].split("</pre>", 1)[0]))
    alone = {"isolated (one site alone, mean of 3)", "isolated (one site alone, worst)"}
    for name, table in tables.items():
        assert set(table) == {"fedavg"} | alone, name
    for label in tables["job"]:
        for name, table in tables.items():
            shared = set(table[label]) & set(tables["job"][label]) - {"wall_s"}
            assert {"quality", "csf", "gsf", "detection_auroc", "tstr_auroc", "dcr_ratio"} <= shared, name
            for key in shared:
                assert table[label][key] == pytest.approx(tables["job"][label][key], abs=1e-9, nan_ok=True), \
                    (name, label, key)
    mpi = tables["mpi"]
    worst, mean = mpi["isolated (one site alone, worst)"], mpi["isolated (one site alone, mean of 3)"]
    assert worst["quality"] <= mean["quality"] and worst["detection_auroc"] >= mean["detection_auroc"]
    with h5py.File(tmp_path / "run-isolated.h5", "r") as f:
        rounds = f["rounds"][()]
        assert len(f["evaluation/sites"]) == 3 and f["evaluation/notes"].attrs["release"] == "one site alone"
        own = [f[f"evaluation/own_site/site_{k}"].attrs["quality"] for k in range(3)]
        assert own != [f[f"evaluation/sites/site_{k}"].attrs["quality"] for k in range(3)]  # its own rows only
        assert np.isfinite(rounds["quality"]).all() and np.isfinite(rounds["eval_s"]).all()
        assert rounds["quality"][-1] == pytest.approx(f["evaluation"].attrs["quality"])
    assert "Scores against the round" in report and "strategies against the round" in report
