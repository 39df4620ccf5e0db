"""`hpcsynth release` refuses a deliberately overfit model: TVAE with batches of 10 for 8,000 steps on 100 training
rows, through `hpcsynth run`, `hpcsynth evaluate` and `hpcsynth release` with the default policy. The release
must exit 1, write nothing and name, one line each, the distance and membership checks that the memorised rows
fail; a normally trained small TVAE of the same cohort, through the same commands, is released with those checks
passed. Both jobs compile nothing (`compile: off`), so their scores repeat exactly whatever the compile cache
holds."""
from pathlib import Path

import h5py
import pytest
import yaml

from hpcsynth.cli import main as hpcsynth

DATA = {"builtin": "mds", "n_patients": 200, "n_sites": 1, "holdout": 0.5}  # 100 training rows, 100 held out
# wide layers, batches of 10, 800 epochs: the weights tell every training row from the held-out ones
OVERFIT = ({"name": "tvae", "batch_size": 10, "hidden": [128, 128], "latent_dim": 64, "compile": "off"}, 800)
# the same cohort trained as one would: batches of 50, 100 epochs (200 steps)
NORMAL = ({"name": "tvae", "batch_size": 50, "hidden": [64, 64], "latent_dim": 16, "compile": "off"}, 100)
REFUSED = "hpcsynth: release refused: "
# the checks on how near the released rows lie to the training rows, and the membership attacks
DISTANCE_AND_MEMBERSHIP = {"not_closer_than_holdout": "dcr_synthetic_p5", "membership_inference": "membership_auroc",
                           "density_membership_inference": "domias_auroc"}


def train_and_score(folder: Path, model: dict, epochs: int) -> Path:
    """`hpcsynth run` of one centralized job in `folder`, then `hpcsynth evaluate` (the privacy attacks' scores the
    policy reads); returns the run file."""
    job = {"seed": 0, "progress": False, "data": DATA, "model": model,
           "federation": {"strategy": "centralized", "rounds": 1, "local_epochs": epochs},
           "output": str(folder / "run.h5")}
    (folder / "job.yaml").write_text(yaml.safe_dump(job))
    hpcsynth(["run", str(folder / "job.yaml")])
    hpcsynth(["evaluate", str(folder / "run.h5")])
    return folder / "run.h5"


def scores(run: Path) -> dict[str, float]:
    with h5py.File(run, "r") as f:
        return {k: float(v) for k, v in f["evaluation"].attrs.items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The overfit job's and the normal job's scored run files."""
    return {name: train_and_score(tmp_path_factory.mktemp(name), *job)
            for name, job in (("overfit", OVERFIT), ("normal", NORMAL))}


@pytest.mark.slow
def test_an_overfit_tvae_is_refused_naming_each_failed_distance_and_membership_check(runs, tmp_path, capsys):
    overfit, normal = scores(runs["overfit"]), scores(runs["normal"])
    # genuinely overfit: its weights are a membership oracle (the normal model's far less so)
    assert overfit["whitebox_membership_auroc"] > 0.95 and normal["whitebox_membership_auroc"] < 0.8
    out = tmp_path / "release.csv"
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        hpcsynth(["release", str(runs["overfit"]), "--out", str(out)])
    assert stop.value.code == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith(REFUSED) and line.endswith("(failed)") for line in lines)
    named = [line.removeprefix(REFUSED).split(":")[0] for line in lines]
    assert len(named) == len(set(named))  # one line per failed check
    assert set(DISTANCE_AND_MEMBERSHIP) <= set(named)
    for check, metric in DISTANCE_AND_MEMBERSHIP.items():
        line = lines[named.index(check)]
        assert f"{check}: {metric} = {overfit[metric]:.4g}, must be " in line
    assert "no_exact_copies" not in named  # the rows are memorised, not copied: the copy check alone would pass it
    assert f"dcr_holdout_p5 = {overfit['dcr_holdout_p5']:.4g}" in lines[named.index("not_closer_than_holdout")]
    assert list(tmp_path.iterdir()) == []  # neither the table nor its provenance sidecar


@pytest.mark.slow
def test_a_normally_trained_tvae_of_the_same_cohort_passes_those_checks_and_is_released(runs, tmp_path, capsys):
    out = tmp_path / "release.csv"
    capsys.readouterr()
    hpcsynth(["release", str(runs["normal"]), "--out", str(out)])
    printed = capsys.readouterr().out.splitlines()
    for check, metric in DISTANCE_AND_MEMBERSHIP.items():
        assert any(line.startswith(f"{check}: {metric} = ") and line.endswith("(passed)") for line in printed), check
    assert out.stat().st_size > 0 and out.with_name(out.name + ".provenance.json").exists()
