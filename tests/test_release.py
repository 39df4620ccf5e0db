"""`hpcsynth release` on a tiny real run (one process, `hpcsynth run` then `hpcsynth evaluate`): the release holds the
synthetic rows with their checksum, the schema, the scores, the privacy accounting and the provenance, never a
dataset from weights or real rows; a policy the run fails is refused with one line per failed check and nothing
written; a run without scores is refused naming `hpcsynth evaluate`; run files are 0600 whatever the umask and the
release 0644; `hpcsynth export` warns when the run fails the default policy."""
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import h5py
import pandas as pd
import pytest
import yaml

from hpcsynth.cli import main as hpcsynth
from hpcsynth.io.inspect import load_synthetic
from hpcsynth.io.runfile import read_table

JOB = {"seed": 0, "progress": False, "data": {"builtin": "mds", "n_patients": 300, "holdout": 0.2},
       "model": {"name": "tvae", "batch_size": 100, "hidden": [16], "latent_dim": 4},
       "federation": {"strategy": "centralized", "rounds": 1, "local_epochs": 1}}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One run written under umask 0 (a file mode would then be 0666 unless set): `scored` after `hpcsynth
    evaluate`, `unscored` as `hpcsynth run` left it."""
    folder = tmp_path_factory.mktemp("release")
    job = folder / "job.yaml"
    job.write_text(yaml.safe_dump({**JOB, "output": str(folder / "run.h5")}))
    old = os.umask(0)
    try:
        hpcsynth(["run", str(job)])
        shutil.copy2(folder / "run.h5", folder / "unscored.h5")
        hpcsynth(["evaluate", str(folder / "run.h5")])
    finally:
        os.umask(old)
    return {"scored": folder / "run.h5", "unscored": folder / "unscored.h5", "folder": folder}


def refused(args: list[str], capsys) -> list[str]:
    """Run a release that must be refused; return its stderr lines."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        hpcsynth(args)
    assert stop.value.code == 1
    return capsys.readouterr().err.splitlines()


def test_run_files_are_private_whatever_the_umask(runs):
    assert mode(runs["scored"]) == 0o600 and mode(runs["unscored"]) == 0o600
    assert not list(runs["folder"].glob(".*tmp*")) and not list(runs["folder"].glob("*.partial.h5"))


def test_the_h5_release_holds_rows_schema_scores_and_provenance_and_nothing_from_weights_or_real_rows(runs, tmp_path):
    out = tmp_path / "release.h5"
    old = os.umask(0o077)
    try:
        hpcsynth(["release", str(runs["scored"]), "--out", str(out)])
    finally:
        os.umask(old)
    assert mode(out) == 0o644
    with h5py.File(out, "r") as f, h5py.File(runs["scored"], "r") as run:
        datasets = []
        f.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)
        assert all(name == "config" or name.startswith("synthetic/") for name in datasets), datasets
        assert set(f) == {"config", "schema", "synthetic", "evaluation", "policy"}
        rows = read_table(f["synthetic"])
        assert f.attrs["rows_sha256"] == hashlib.sha256(rows.to_csv(index=False).encode()).hexdigest()
        assert f["config"][()] == run["config"][()] and f.attrs["run_id"] == run.attrs["run_id"]
        assert dict(f["evaluation"].attrs)["membership_auroc"] == run["evaluation"].attrs["membership_auroc"]
        assert set(f["schema"]) == set(rows.columns) and "transformer" not in f["schema"]
    pd.testing.assert_frame_equal(rows, load_synthetic(runs["scored"]))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_release_has_its_provenance_in_a_sidecar_with_the_rows_checksum(runs, tmp_path, suffix):
    out = tmp_path / f"release{suffix}"
    hpcsynth(["release", str(runs["scored"]), "--out", str(out)])
    sidecar = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    rows = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    text = out.read_bytes() if suffix == ".csv" else rows.to_csv(index=False).encode()
    assert sidecar["rows_sha256"] == hashlib.sha256(text).hexdigest() and sidecar["rows"] == len(rows)
    assert {"run_id", "config", "hpcsynth_version", "schema", "scores", "privacy", "policy"} <= set(sidecar)
    assert mode(out) == 0o644


def test_a_policy_the_run_fails_is_refused_with_one_line_per_failed_check_and_nothing_written(runs, tmp_path, capsys):
    policy = tmp_path / "strict.yaml"
    policy.write_text(yaml.safe_dump({"checks": [
        {"name": "membership", "metric": "membership_auroc", "threshold": 0.0},
        {"name": "far", "metric": "dcr_synthetic_p5", "threshold": 1e6},
        {"name": "no_copies", "metric": "exact_match_rate", "threshold": 0}]}))
    out = tmp_path / "release.csv"
    lines = refused(["release", str(runs["scored"]), "--out", str(out), "--policy", str(policy)], capsys)
    assert len(lines) == 2
    assert "membership_auroc" in lines[0] and "<= 0" in lines[0]
    assert "dcr_synthetic_p5" in lines[1] and ">= 1e+06" in lines[1]
    assert list(tmp_path.iterdir()) == [policy]


def test_a_run_without_its_scores_is_refused_naming_hpcsynth_evaluate(runs, tmp_path, capsys):
    lines = refused(["release", str(runs["unscored"]), "--out", str(tmp_path / "release.h5")], capsys)
    assert any("membership_auroc" in line and "hpcsynth evaluate" in line for line in lines)
    assert list(tmp_path.iterdir()) == []


def test_export_warns_when_the_run_fails_the_default_policy(runs, tmp_path, capsys):
    failing = tmp_path / "failing.h5"
    shutil.copy2(runs["scored"], failing)
    with h5py.File(failing, "r+") as f:
        f["evaluation"].attrs["membership_auroc"] = 0.9
    capsys.readouterr()
    hpcsynth(["export", str(runs["scored"]), "--out", str(tmp_path / "passing.csv")])
    assert "warning" not in capsys.readouterr().err
    hpcsynth(["export", str(failing), "--out", str(tmp_path / "failing.csv")])
    assert "warning" in (err := capsys.readouterr().err) and "membership_inference" in err
