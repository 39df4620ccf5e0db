"""`hpcsynth run` on visit data, end to end under `mpiexec -n 3`: every strategy (sd_sharing's two phases too)
trains a sequence generator, the run files hold the releases as plain context and visit tables, `inspect` prints
the job's numbers again, `export` writes one row per visit, and a malformed long file stops every rank with one
line."""
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest

from hpcsynth.data.longitudinal import load_longitudinal
from hpcsynth.evaluate.temporal_metrics import SUMMARY, TEMPORAL_METRICS

CLI = [sys.executable, "-m", "hpcsynth.cli"]
MODEL = {"name": "sequence_vae", "batch_size": 100, "hidden": [32, 32], "latent_dim": 8, "gru_dim": 16}


def _table(printed: str) -> list[list[str]]:
    """The rows of a printed strategy table, without the wall time (the last column)."""
    rows = [line.split() for line in printed.splitlines()
            if line.strip().startswith(("centralized", "isolated", "fedavg", "sd_sharing"))]
    return [row[:-1] for row in rows]


@pytest.mark.mpi
@pytest.mark.slow
def test_a_longitudinal_job_trains_stores_inspects_and_exports_its_releases(mpirun, write_job, tmp_path):
    job = write_job({"data": {"builtin": "mds_followup", "n_patients": 240, "holdout": 0.25}, "model": MODEL,
                     "federation.strategy": ["isolated", "fedavg", "sd_sharing"], "federation.rounds": 2})
    done = mpirun(3, [*CLI, "run", str(job)], timeout=400)
    assert done.returncode == 0, done.stderr
    printed = _table(done.stdout)
    assert len(printed) == 3 and printed[0][0] == "isolated" and "(one site alone, mean)" in done.stdout
    with h5py.File(tmp_path / "run-sd_sharing.h5") as f:  # site models, then one on the pooled synthetic patients
        assert f["rounds"]["round"].tolist() == [0, 1, 2, 3]
        assert f["synthetic/pooled/context/patient_id"].shape == (240,)
    with h5py.File(tmp_path / "run-fedavg.h5") as f:
        assert f.attrs["data"] == "sequences" and f["rounds"].shape == (2,)
        visits, context = f["synthetic/pooled/visits"], f["synthetic/pooled/context"]
        assert isinstance(visits["hb"], h5py.Dataset) and visits["hb"].dtype == np.float64
        assert context["patient_id"].shape == (240,)  # every site draws as many patients as it holds
        n_visits = visits["day"].shape[0]
        sites = sum(f[f"synthetic/site_{k}/context/patient_id"].shape[0] for k in range(3))
        assert sites == 240 and set(SUMMARY) <= set(f["evaluation"].attrs)
        # the cohort declares that progression to AML ends follow-up: no synthetic visit after one, counted
        assert f["evaluation"].attrs["visits_after_end"] == 0
        aml, patient = visits["aml"][()], visits["patient_id"][()]
        last = np.r_[patient[1:] != patient[:-1], True]
        assert aml.sum() > 0 and not (aml[~last] == 1).any()
    with h5py.File(tmp_path / "run-isolated.h5") as f:
        worst, mean = dict(f["evaluation/worst"].attrs), dict(f["evaluation"].attrs)
        each = [dict(f[f"evaluation/sites/site_{k}"].attrs) for k in range(3)]
    for k in ("length_similarity", "autocorr_lag1_gap"):  # the mean of the sites alone, and the worst one
        values = [s[k] for s in each]
        assert mean[k] == pytest.approx(np.mean(values))
        assert worst[k] == (min(values) if TEMPORAL_METRICS[k].direction == "higher" else max(values))
    inspected = subprocess.run([*CLI, "inspect", str(tmp_path / "run.h5")], capture_output=True, text=True,
                               timeout=120)
    assert _table(inspected.stdout) == printed  # the same numbers in every table
    out = tmp_path / "visits.csv"
    exported = subprocess.run([*CLI, "export", str(tmp_path / "run.h5"), "--strategy", "fedavg", "--out", str(out)],
                              capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stderr
    long = pd.read_csv(out)
    assert len(long) == n_visits and list(long.columns[:2]) == ["patient_id", "day"]
    assert long.groupby("patient_id")["day"].is_monotonic_increasing.all()
    assert (long.groupby("patient_id")["age"].nunique() == 1).all()  # the context repeats on every visit


@pytest.mark.mpi
def test_a_patient_on_two_sites_stops_every_rank_of_a_longitudinal_run(mpirun, write_job, tmp_path):
    seqs = load_longitudinal("mds_followup", 60, 3, 0)
    long = seqs.visits.merge(seqs.context[["patient_id", "site", "age", "sex"]], on="patient_id")
    moved = long["patient_id"] == long["patient_id"].iloc[0]
    long.loc[moved & (long.groupby("patient_id").cumcount() == 1), "site"] = 1  # one visit of it elsewhere
    paths = []
    for k in range(3):
        paths.append(str(tmp_path / f"site{k}.csv"))
        long[long["site"] == k].drop(columns="site").to_csv(paths[-1], index=False)
    job = write_job({"data": {"sites": paths, "sequence": {"key": "patient_id", "index": "day"},
                              "context": ["age", "sex"]}, "model": MODEL})
    done = mpirun(3, [*CLI, "run", str(job)], timeout=120)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("hpcsynth: error")]
    assert len(errors) == 1 and "visits on more than one site" in errors[0], done.stderr
