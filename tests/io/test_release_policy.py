"""The default release policy refuses a release that copies its training rows, naming the checks it fails:
a real run whose synthetic tables are replaced by the training rows, scored by `hpcsynth evaluate`, is refused
by `hpcsynth release` with the exact-copy, distance, Anonymeter and density-membership checks named."""
from pathlib import Path

import h5py
import pytest
import yaml

from hpcsynth.cli import main as hpcsynth
from hpcsynth.comm import SoloComm
from hpcsynth.io.runfile import write_table
from hpcsynth.jobs.evaluate import real_rows, scoring_transformer

JOB = {"seed": 0, "progress": False, "data": {"builtin": "mds", "n_patients": 300, "holdout": 0.2},
       "model": {"name": "tvae", "batch_size": 100, "hidden": [16], "latent_dim": 4},
       "federation": {"strategy": "centralized", "rounds": 1, "local_epochs": 1}}


@pytest.fixture(scope="module")
def copied(tmp_path_factory) -> Path:
    """A run whose every synthetic table is its training rows, then scored."""
    folder = tmp_path_factory.mktemp("copied")
    job = folder / "job.yaml"
    job.write_text(yaml.safe_dump({**JOB, "output": str(folder / "run.h5")}))
    hpcsynth(["run", str(job)])
    path = folder / "run.h5"
    rows = real_rows(path, None, SoloComm())
    transformer = scoring_transformer(rows, SoloComm())
    with h5py.File(path, "r+") as f:
        for name in list(f["synthetic"]):
            del f["synthetic"][name]
            write_table(f["synthetic"].create_group(name), rows.train[transformer.columns], transformer)
    hpcsynth(["evaluate", str(path)])
    return path


def test_a_release_of_the_training_rows_is_refused_naming_the_failed_checks(copied, tmp_path, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        hpcsynth(["release", str(copied), "--out", str(tmp_path / "release.csv")])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    failed = {line.split(": ")[2] for line in err.splitlines() if line.endswith("(failed)")}
    assert {"no_exact_copies", "singling_out", "linkability", "inference",
            "density_membership_inference", "membership_inference"} <= failed
    assert not any(tmp_path.iterdir())
