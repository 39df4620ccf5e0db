"""Shift diagnostics: alike sites read as alike, covariate-split sites as shifted on the split column, and the
MPI run (histograms only) equals the one-process run."""
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from hpcsynth.data.shift import ShiftReport, column_counts
from hpcsynth.data.transformer import TableTransformer

RNG = np.random.default_rng(0)


def report(sites):
    pooled = pd.concat(sites, ignore_index=True)
    t = TableTransformer().fit(pooled)
    return ShiftReport.from_counts(t.columns, [column_counts(s, t) for s in sites], "y")


def frame(n, shift=0.0):
    return pd.DataFrame({"x": RNG.normal(shift, 1, n), "y": RNG.choice([0, 1], n), "c": RNG.choice(["a", "b"], n)})


def test_identical_sites_have_small_divergence_and_read_alike():
    r = report([frame(3000), frame(3000), frame(3000)])
    assert r.divergence.max() < 0.06
    assert r.reading().startswith("sites are alike")
    assert r.table()["share"].round(3).tolist() == [0.333, 0.333, 0.333]


def test_shifted_site_is_named_with_its_column():
    r = report([frame(2000), frame(2000), frame(2000, shift=2.0)])
    table = r.table()
    assert table.loc[2, "most_shifted"] == "x" and table.loc[2, "js"] > 0.3
    assert r.reading().startswith("strong covariate shift on x (JS") and "at site 2" in r.reading()


def test_a_column_a_site_never_records_is_not_called_a_shift():
    a, b = frame(1000), frame(1000).assign(c=None)
    r = report([a, b])
    assert r.unrecorded[1, 2] and not r.unrecorded[0].any()
    assert "1 columns not recorded at some sites" in r.reading()


def test_counts_are_histograms_of_equal_pooled_mass():
    data = frame(20000)
    t = TableTransformer().fit(data)
    counts = column_counts(data, t)[0]
    assert counts.size == 21 and counts[-1] == 0
    assert np.allclose(counts[:-1] / counts.sum(), 0.05, atol=0.005)


@pytest.mark.mpi
def test_mpi_shift_equals_one_process_shift(mpirun, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"data": {"builtin": "flchain", "partition": {"kind": "covariate",
                                   "column": "age", "n_sites": 3}}, "output": str(tmp_path / "run.h5")}))
    cli = [sys.executable, "-m", "hpcsynth.cli", "shift", str(job)]
    result = mpirun(3, [*cli, "--out", str(tmp_path / "mpi.h5")], timeout=120)
    assert result.returncode == 0, result.stderr
    assert "strong covariate shift on age" in result.stdout
    import subprocess

    assert subprocess.run([*cli, "--out", str(tmp_path / "one.h5")], capture_output=True).returncode == 0
    with h5py.File(tmp_path / "mpi.h5") as a, h5py.File(tmp_path / "one.h5") as b:
        np.testing.assert_allclose(a["shift/divergence"][()], b["shift/divergence"][()], atol=1e-12)
        assert a.attrs["kind"] == "shift" and a["shift"].attrs["reading"] == b["shift"].attrs["reading"]
