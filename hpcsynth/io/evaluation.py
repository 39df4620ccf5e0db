"""A run file's `/evaluation`: written by the training job and by `hpcsynth evaluate`, read back by
`hpcsynth inspect`, so every table shows the numbers of one evaluation.

Layout: the scores as attributes of `/evaluation`; `directions` and `notes` (the release's label under
`release`, the worst subgroups); with a release per site, `worst` and `sites/site_<k>`; when asked for,
`own_site/site_<k>` (each site against its own held-out rows); `curves/...` for the report.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py

from hpcsynth.evaluate.metrics import directions
from hpcsynth.evaluate.suite import Evaluation
from hpcsynth.files import create_private
from hpcsynth.io.runfile import fill_evaluation


def _site_groups(group: h5py.Group | None) -> list[dict[str, float]]:
    if group is None:
        return []
    return [dict(group[k].attrs) for k in sorted(group, key=lambda k: int(k.split("_")[1]))]


def evaluation_groups(evaluation: Evaluation) -> dict[str, dict]:
    """The groups of `/evaluation` besides the scores: directions, notes, and the per-site figures."""
    return {"directions": directions(evaluation.scores), "notes": {**evaluation.notes, "release": evaluation.release},
            "worst": evaluation.worst, **{f"sites/site_{k}": s for k, s in enumerate(evaluation.sites)},
            **{f"own_site/site_{k}": s for k, s in enumerate(evaluation.own_site)}}


def write_evaluation(path: str | Path, evaluation: Evaluation) -> Path:
    """Replace `/evaluation` through a copy and a rename (scores the file had and this evaluation did not
    recompute are kept, with their directions); the copy keeps the file's mode, private for a run file."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.eval-{os.getpid()}")
    groups = evaluation_groups(evaluation)
    try:
        create_private(tmp)
        shutil.copyfile(target, tmp)
        shutil.copymode(target, tmp)
        with h5py.File(tmp, "r+") as f:
            old = dict(f["evaluation"].attrs) if "evaluation" in f else {}
            old_directions = dict(f["evaluation/directions"].attrs) if "evaluation/directions" in f else {}
            if "evaluation" in f:
                del f["evaluation"]
            groups["directions"] = {**old_directions, **groups["directions"]}
            fill_evaluation(f, {**old, **evaluation.scores}, groups, evaluation.curves())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def read_evaluation(run: h5py.Group) -> Evaluation | None:
    """The stored scores, notes and per-site figures of a run (None when it has no `/evaluation`)."""
    if "evaluation" not in run:
        return None
    ev = run["evaluation"]
    notes = {k: str(v) for k, v in ev["notes"].attrs.items()} if "notes" in ev else {}
    return Evaluation(scores={k: float(v) for k, v in ev.attrs.items()}, notes=notes,
                      release=notes.pop("release", "consortium"), sites=_site_groups(ev.get("sites")),
                      worst=dict(ev["worst"].attrs) if "worst" in ev else {}, own_site=_site_groups(ev.get("own_site")))
