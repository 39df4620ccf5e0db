"""Scaling studies: the allreduce model against its closed form, the study's job files, and a real local
study under mpiexec that writes the table and the plot."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from hpcsynth.config import ConfigError, load
from hpcsynth.scale import AlphaBeta, Projection, efficiency, study_configs
from tests.conftest import REPO


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
