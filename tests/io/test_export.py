"""What goes in comes out of `hpcsynth export`: flchain's training rows as a user's CSV (integer-coded
categories declared, integer events) go through `hpcsynth run`, and the exported CSV reads back with the input's
dtypes under pandas.read_csv, for every family; Parquet keeps the pandas dtypes themselves."""
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hpcsynth.cli import main as hpcsynth
from hpcsynth.config import DataConfig
from hpcsynth.data.sources import load_site
from hpcsynth.io.inspect import load_synthetic
from hpcsynth.models import MODELS

ROWS = 600
SMALL = {"tvae": {"hidden": [16], "latent_dim": 4}, "vae_bgm": {"hidden": [16], "latent_dim": 4},
         "ctgan": {"generator_dim": [16], "discriminator_dim": [16], "embedding_dim": 8},
         "ddpm": {"hidden": [32], "diffusion_steps": 20, "sample_steps": 10}, "bayesnet": {"n_bins": 4}}


@pytest.fixture(scope="module")
def flchain_csv(tmp_path_factory) -> Path:
    """The first rows of the named cohort's training rows, written as a user would write them."""
    path = tmp_path_factory.mktemp("flchain") / "flchain.csv"
    train = load_site(DataConfig(builtin="flchain", holdout=0.2), None, 1, seed=0).train
    train.iloc[:ROWS].to_csv(path, index=False)
    return path


def write_job(folder: Path, data: dict, model: str, strategy: str) -> Path:
    """A tiny job on the CSV with flchain's integer-coded categories declared."""
    job = {"seed": 0, "progress": False, "output": str(folder / "run.h5"),
           "data": {"time": "futime", "event": "death", "categorical": ["flc.grp", "sample.yr"], "holdout": 0.2,
                    **data},
           "model": {"name": model, "batch_size": 100, **SMALL[model]},
           "federation": {"strategy": strategy, "rounds": 1, "local_epochs": 1}}
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def assert_same_columns_and_levels(exported: pd.DataFrame, real: pd.DataFrame) -> None:
    assert exported.dtypes.astype(str).to_dict() == real.dtypes.astype(str).to_dict()
    for column in ("flc.grp", "sample.yr", "death", "sex", "mgus"):
        assert set(exported[column].dropna()) <= set(real[column].dropna()), column


@pytest.mark.parametrize("model", list(MODELS))
def test_the_exported_csv_reads_back_with_the_input_dtypes(model, flchain_csv, tmp_path):
    hpcsynth(["run", str(write_job(tmp_path, {"path": str(flchain_csv)}, model, "centralized"))])
    hpcsynth(["export", str(tmp_path / "run.h5"), "--out", str(tmp_path / "synthetic.csv")])
    real = pd.read_csv(flchain_csv)
    assert real["flc.grp"].dtype == "int64" and real["sample.yr"].dtype == "int64"
    assert_same_columns_and_levels(pd.read_csv(tmp_path / "synthetic.csv"), real)


def test_parquet_keeps_the_pandas_dtypes_categoricals_included(tmp_path):
    rows = pd.DataFrame({"grade": pd.Categorical(["b", "a", "b"], categories=["b", "a"], ordered=True),
                         "visits": pd.Series([1, None, 3], dtype="Int64"), "smoker": [True, False, True],
                         "seen": pd.to_datetime(["2020-01-01", "2021-05-03", "2022-02-02"]).tz_localize("UTC")})
    rows.to_parquet(tmp_path / "in.parquet")
    job = write_job(tmp_path, {"path": str(tmp_path / "in.parquet"), "time": None, "event": None,
                               "categorical": [], "holdout": 0.0}, "bayesnet", "centralized")
    hpcsynth(["run", str(job)])
    hpcsynth(["export", str(tmp_path / "run.h5"), "--out", str(tmp_path / "out.parquet")])
    exported = pd.read_parquet(tmp_path / "out.parquet")
    assert exported.dtypes.to_dict() == rows.dtypes.to_dict() == load_synthetic(tmp_path / "run.h5").dtypes.to_dict()
    assert list(exported["grade"].cat.categories) == ["b", "a"] and exported["grade"].cat.ordered


@pytest.mark.mpi
@pytest.mark.slow
def test_fedavg_over_two_site_files_exports_the_input_dtypes(mpirun, flchain_csv, tmp_path):
    real = pd.read_csv(flchain_csv)
    sites = [tmp_path / f"site{k}.csv" for k in range(2)]
    for k, path in enumerate(sites):
        real.iloc[k::2].to_csv(path, index=False)
    job = write_job(tmp_path, {"sites": [str(p) for p in sites]}, "tvae", "fedavg")
    result = mpirun(2, [sys.executable, "-W", "ignore", "-m", "hpcsynth.cli", "run", str(job)], timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for site in (None, 0, 1):
        out = tmp_path / f"synthetic-{site}.csv"
        hpcsynth(["export", str(tmp_path / "run.h5"), "--out", str(out)] + ([] if site is None else
                                                                          ["--site", str(site)]))
        assert_same_columns_and_levels(pd.read_csv(out), real)
