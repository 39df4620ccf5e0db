"""Scaling studies: the allreduce model against its closed form, its residuals, projected rows labelled apart
from measured ones (table and plot), node layouts, the study's job files, and a real local study under mpiexec
that writes the table (peak memory per rank included) and the plot."""
from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest

from hpcsynth.config import ConfigError, load
from hpcsynth.federated.records import RoundRecord
from hpcsynth.scale import (
    PROJECT_TO,
    AlphaBeta,
    Projection,
    efficiency,
    figure,
    layout,
    measure,
    project,
    report,
    residuals,
    study_configs,
)
from hpcsynth.submit import JobSpec
from mpi_support import REPO


def test_the_alpha_beta_fit_recovers_the_parameters_that_generated_the_points():
    truth = AlphaBeta(alpha=3e-5, beta=2e-9)
    p = np.array([2, 4, 8, 16, 2, 8])
    n = np.array([1e4, 1e4, 1e4, 1e4, 1e6, 1e6])
    # the closed form: Rabenseifner's reduce-scatter + allgather
    seconds = 2 * np.log2(p) * 3e-5 + 2 * (p - 1) / p * n * 2e-9
    np.testing.assert_allclose(truth(p, n), seconds)
    fitted = AlphaBeta.fit(np.r_[1, p], np.r_[1e4, n], np.r_[0.5, seconds])  # p = 1 is left out of the fit
    assert fitted.alpha == pytest.approx(3e-5, rel=1e-6) and fitted.beta == pytest.approx(2e-9, rel=1e-6)
    assert truth(1, 1e6) == 0.0
    with pytest.raises(ValueError, match="more than one rank"):
        AlphaBeta.fit([1], [1e4], [0.1])


def test_projection_is_one_at_the_first_run_and_strong_compute_shrinks_with_the_sites():
    model = AlphaBeta(alpha=1e-4, beta=0.0)
    strong = Projection("strong", model, p0=1, compute0=1.0, round0=1.0, calls=1, nbytes=1e4)
    weak = Projection("weak", model, p0=1, compute0=1.0, round0=1.0, calls=1, nbytes=1e4)
    assert strong.efficiency(1) == pytest.approx(1.0) and weak.efficiency(1) == pytest.approx(1.0)
    assert strong.round_s(1024) == pytest.approx(1 / 1024 + 2 * 10 * 1e-4)
    assert weak.round_s(1024) == pytest.approx(1 + 2 * 10 * 1e-4)
    assert weak.efficiency(1024) == pytest.approx(1 / (1 + 2e-3))
    table = pd.DataFrame({"ranks": [1, 2, 4], "round_s": [1.0, 0.5, 0.5]})
    np.testing.assert_allclose(efficiency(table, "strong"), [1.0, 1.0, 0.5])
    np.testing.assert_allclose(efficiency(table, "weak"), [1.0, 2.0, 2.0])


def test_strong_studies_keep_the_consortium_and_weak_studies_keep_each_site(write_job, tmp_path):
    job = write_job({"data.n_patients": 400})
    strong = [load(p) for p in study_configs(job, [2, 4, 8], "strong", tmp_path / "s")]
    weak = [load(p) for p in study_configs(job, [2, 4, 8], "weak", tmp_path / "w")]
    assert [c.data.n_sites for c in strong] == [2, 4, 8]
    assert [c.data.n_patients for c in strong] == [400, 400, 400]
    assert [c.data.n_patients for c in weak] == [400, 800, 1600]
    assert strong[1].output == str(tmp_path / "s" / "strong-p4.h5")
    with pytest.raises(ConfigError, match="one exchanging strategy"):
        study_configs(write_job({"federation.strategy": "isolated"}), [1, 2], "strong", tmp_path / "x")


def test_a_local_weak_scaling_study_writes_its_table_and_plot(write_job, tmp_path):
    job = write_job({"data.n_patients": 200, "model.hidden": [16, 16], "model.latent_dim": 4})
    done = subprocess.run([sys.executable, "-m", "hpcsynth.cli", "scale", str(job), "--ranks", "1,2",
                           "--mode", "weak", "--folder", str(tmp_path / "scale")],
                          capture_output=True, text=True, cwd=REPO, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "projected round at 1024 sites" in done.stdout and "(a projection, not a measurement)" in done.stdout
    table = pd.read_csv(tmp_path / "scale" / "weak.csv")
    assert list(table["ranks"]) == [1, 2]
    assert table["efficiency"].iloc[0] == 1.0
    assert (table["bytes_per_call"] > 0).all() and (table["comm_s"] >= 0).all()
    assert (tmp_path / "scale" / "weak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with h5py.File(tmp_path / "scale" / "weak-p2.h5", "r") as f:
        memory = f["rounds"]["max_rss_mb"]
    assert len(memory) == 2 and (memory > 10).all() and (memory < 4000).all()  # torch alone is over 10 MB
    assert table["max_rss_mb"].between(10, 4000).all()
    assert table["comm_fit_s"].iloc[0] == 0.0  # one site exchanges nothing: its residual is its measured comm
    # seconds: the study and this line may round a residual of 0 differently (-2e-19 against 0.0)
    np.testing.assert_allclose(table["comm_residual_s"], table["comm_s"] - table["comm_fit_s"], atol=1e-12)
    lines = done.stdout.splitlines()
    header = lines[0].split()
    assert header[0] == "point" and "max_rss_mb" in header and "comm_residual_s" in header
    rows = [line.split() for line in lines[1:]]
    points = [row[0] for row in rows if len(row) > 1 and row[1].isdigit()]  # the table's rows: label, ranks, ...
    assert points[:2] == ["measured", "measured"] and set(points[2:]) == {"projected"} and len(points) == 11


def _measured(comm_s: list[float]) -> pd.DataFrame:
    """A measured table of three runs (1, 2, 4 ranks) with the given comm seconds per round."""
    return pd.DataFrame({"ranks": [1, 2, 4], "nodes": [1, 2, 2], "strategy": "fedavg", "round_s": [1.0, 0.6, 0.4],
                         "compute_s": [1.0, 0.5, 0.25], "comm_s": comm_s, "calls": 1,
                         "bytes_per_call": [4e4, 4e4, 4e4], "max_rss_mb": [300.0, 310.0, 320.0]})


def test_residuals_are_the_measured_comm_minus_the_fitted_model_at_each_point():
    table = _measured([0.0, 0.1, 0.15])
    model = AlphaBeta(alpha=0.05, beta=0.0)  # t(2) = 0.1, t(4) = 0.2
    fitted, residual = residuals(table, model)
    np.testing.assert_allclose(fitted, [0.0, 0.1, 0.2])
    np.testing.assert_allclose(residual, [0.0, 0.0, -0.05])
    fitted_here = project(table, "strong").model
    assert np.abs(residuals(table, fitted_here)[1]).max() > 0  # two parameters cannot pass through 0.1, 0.15 and 0


def test_the_report_labels_every_row_beyond_the_largest_run_as_projected():
    table = _measured([0.0, 0.1, 0.15]).assign(efficiency=lambda t: efficiency(t, "strong"))
    rows = report(table, project(table, "strong"))
    measured, projected = rows[rows["point"] == "measured"], rows[rows["point"] == "projected"]
    assert set(rows["point"]) == {"measured", "projected"}
    assert list(measured["ranks"]) == [1, 2, 4] and measured["max_rss_mb"].notna().all()
    assert list(projected["ranks"]) == [8, 16, 32, 64, 128, 256, 512, PROJECT_TO]
    assert projected["max_rss_mb"].isna().all()  # nothing but the model's times is claimed beyond the runs
    assert (projected["round_s"] > 0).all() and projected["efficiency"].between(0, 1).all()


def test_the_plot_shades_and_labels_the_projection_and_shows_the_residuals():
    table = _measured([0.0, 0.1, 0.15])
    fig = figure(table, project(table, "strong"), "strong scaling")
    left, right, third = fig.axes[:3]
    texts = [t.get_text() for axis in (left, right) for t in axis.texts]
    assert sum("projection" in t for t in texts) == 2 and any("projected: " in t for t in texts)
    labels = [t.get_text() for axis in (left, right) for t in axis.get_legend().get_texts()]
    assert sum("projected beyond the runs" in label for label in labels) == 2
    assert third.get_title() == "alpha-beta fit residuals"
    (points,) = [line for line in third.get_lines() if line.get_label().startswith("measured - fitted")]
    np.testing.assert_allclose(points.get_ydata(), residuals(table, project(table, "strong").model)[1] * 1e3)


def test_a_slurm_layout_spreads_the_ranks_over_the_nodes_asked_for():
    two = JobSpec(nodes=2, ntasks_per_node=4)
    assert [layout(p, two) for p in (1, 2, 4)] == [(1, 1), (2, 1), (2, 2)]
    assert [layout(p, JobSpec(ntasks_per_node=2)) for p in (1, 2, 4)] == [(1, 1), (1, 2), (2, 2)]
    with pytest.raises(ValueError, match="3 ranks do not split evenly over --nodes 2"):
        layout(3, two)


def test_run_files_from_before_the_memory_column_read_with_memory_unknown(tmp_path):
    old = np.array([(r, 2.0, 1.0, 0.8, 0.2, 100, 5, 0.0) for r in range(2)],
                   dtype=[("round", "<i8"), ("loss", "<f8"), ("wall_s", "<f8"), ("compute_s", "<f8"),
                          ("comm_s", "<f8"), ("bytes_reduced", "<i8"), ("steps", "<i8"), ("epsilon", "<f8")])
    assert RoundRecord.from_row(old[0]).max_rss_mb == 0.0
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.attrs.update(status="complete", strategy="fedavg", n_sites=2)
        f["rounds"] = old
    (row,) = measure([tmp_path / "old.h5"]).to_dict("records")
    assert row["ranks"] == 2 and row["round_s"] == 1.0 and np.isnan(row["max_rss_mb"])
