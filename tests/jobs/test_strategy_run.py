"""The training job with several ranks per site, end to end under real mpiexec: what the wrappers forward
reaches the job (counts cover both shards of a site; sd_sharing still runs its two phases)."""
from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from mpi_support import apply_overrides

SITES = 2
BAYESNET = ["centralized", "isolated", "fedavg"]


def job(folder: Path, per_site: int, overrides: dict) -> Path:
    """A tiny two-site job with `per_site` ranks per site, written to `folder`."""
    mapping = {"seed": 0, "data": {"builtin": "mds", "n_patients": 200, "holdout": 0.2},
               "model": {"name": "bayesnet", "n_bins": 4},
               "federation": {"strategy": BAYESNET, "rounds": 1, "local_epochs": 1, "ranks_per_site": per_site},
               "sample": {"n_rows": 20}, "output": str(folder / "run.h5"), "progress": False}
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(apply_overrides(mapping, overrides), sort_keys=False))
    return path


def run(mpirun, folder: Path, per_site: int, overrides: dict | None = None) -> None:
    folder.mkdir()
    result = mpirun(SITES * per_site, [sys.executable, "-W", "ignore", "-m", "hpcsynth.cli", "run",
                                       str(job(folder, per_site, overrides or {}))], timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def params(folder: Path, strategy: str) -> np.ndarray:
    with h5py.File(folder / f"run-{strategy}.h5", "r") as f:
        return f["checkpoint/params"][()]


@pytest.mark.mpi
@pytest.mark.slow
def test_bayesian_network_counts_with_two_ranks_per_site_equal_one_rank_per_site(mpirun, tmp_path):
    """Shared counts are the pooled counts either way; isolated counts cover both shards of the site."""
    run(mpirun, tmp_path / "one", 1)
    run(mpirun, tmp_path / "two", 2)
    for strategy in BAYESNET:
        one, two = params(tmp_path / "one", strategy), params(tmp_path / "two", strategy)
        if strategy == "isolated":  # a row per site, however many ranks it has
            assert two.shape[0] == SITES and not np.array_equal(one[0], one[1], equal_nan=True)
        np.testing.assert_array_equal(two, one, err_msg=strategy)


@pytest.mark.mpi
@pytest.mark.slow
def test_sd_sharing_with_two_ranks_per_site_runs_both_phases_and_shares_one_model(mpirun, tmp_path):
    model = {"name": "tvae", "batch_size": 64, "hidden": [16], "latent_dim": 4}
    run(mpirun, tmp_path / "two", 2, {"model": model, "federation.strategy": "sd_sharing"})
    with h5py.File(tmp_path / "two" / "run.h5", "r") as f:
        rounds = f["rounds"][()]
        assert rounds["round"].tolist() == [0, 1]  # the local phase, then the shared one
        assert rounds["bytes_reduced"][0] == 0 and rounds["bytes_reduced"][1] > 0
        assert f["checkpoint/params"].shape[0] == 1
        assert len(f["synthetic/pooled"][next(iter(f["synthetic/pooled"]))]) == SITES * 20


@pytest.mark.mpi
@pytest.mark.slow
def test_scoring_every_round_changes_neither_the_model_nor_the_release(mpirun, tmp_path):
    """The per-round draws use their own streams; a phased strategy is scored in its shared phase only."""
    overrides = {"model": {"name": "tvae", "batch_size": 64, "hidden": [16], "latent_dim": 4},
                 "federation.strategy": ["fedavg", "sd_sharing"], "federation.rounds": 2, "sample.n_rows": 40}
    run(mpirun, tmp_path / "last", 1, overrides)
    run(mpirun, tmp_path / "every", 1, {**overrides, "evaluation.every": 1})
    for strategy in ("fedavg", "sd_sharing"):
        np.testing.assert_array_equal(params(tmp_path / "every", strategy), params(tmp_path / "last", strategy))
        with h5py.File(tmp_path / "every" / f"run-{strategy}.h5") as every, \
                h5py.File(tmp_path / "last" / f"run-{strategy}.h5") as last:
            np.testing.assert_array_equal(every["synthetic/site_1/age"][()], last["synthetic/site_1/age"][()])
            assert every["evaluation"].attrs["quality"] == last["evaluation"].attrs["quality"]
            scored = np.isfinite(every["rounds"]["quality"])
            assert np.isnan(last["rounds"]["quality"][:-1]).all() and np.isfinite(last["rounds"]["quality"][-1])
    with h5py.File(tmp_path / "every" / "run-fedavg.h5") as f:
        assert np.isfinite(f["rounds"]["quality"]).all() and np.isfinite(f["rounds"]["eval_s"]).all()
    assert scored.tolist() == [False, False, True, True]  # sd_sharing: 2 local rounds, then 2 shared
