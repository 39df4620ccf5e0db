"""The run file of a longitudinal job: the same header, `/rounds` and `/evaluation` as a table run, and each
synthetic release as two plain tables, `/synthetic/<name>/context` (one row per patient) and
`/synthetic/<name>/visits` (one row per visit), readable with h5py alone: one dataset per column, numbers as
float64, text as integer codes with their labels (code -1: missing), as `hpcsynth.io.runfile.read_table` reads.
"""
from __future__ import annotations

import json
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from hpcsynth.data.sequences import Sequences
from hpcsynth.io.runfile import _fill_header, atomic_file, atomic_write, compared_strategies, read_table


@dataclass
class SequenceRun:
    """What a longitudinal strategy's run file holds.

    Parameters
    ----------
    config_text, config_source : str
        The job file's text and where it came from.
    strategy : str
        The strategy's name.
    n_sites : int
        The number of sites.
    transformer_state : str
        The patient-row transform, as JSON (`SequenceTransformer.state`).
    rounds : ndarray
        One record per round (`RoundRecord.table`).
    synthetic : dict
        {name: Sequences}: "pooled" and "site_<k>".
    scores : dict
        The temporal scores of the release against the consortium (`/evaluation` attributes).
    worst : dict
        For releases judged one site alone: the worst site's value of each score (empty otherwise).
    sites : list of dict
        For releases judged one site alone: each site's scores.
    epsilon_spent : list of float
        Each site's privacy spent under DP-SGD (empty without).
    """

    config_text: str
    config_source: str
    strategy: str
    n_sites: int
    transformer_state: str
    rounds: np.ndarray
    synthetic: dict[str, Sequences]
    scores: dict[str, float]
    worst: dict[str, float] = field(default_factory=dict)
    sites: list[dict[str, float]] = field(default_factory=list)
    epsilon_spent: list[float] = field(default_factory=list)


def write_plain_table(group: h5py.Group, frame: pd.DataFrame) -> None:
    """One dataset per column: numbers (and booleans) as float64, anything else as codes with their labels."""
    group.attrs["columns"] = json.dumps([str(c) for c in frame.columns])
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            ds = group.create_dataset(str(column), data=values.to_numpy(dtype=np.float64, na_value=np.nan))
            ds.attrs["kind"] = "integer" if pd.api.types.is_integer_dtype(values) else "continuous"
        else:
            codes, labels = pd.factorize(values.astype("string"), sort=True)
            ds = group.create_dataset(str(column), data=codes.astype(np.int64))
            ds.attrs["labels"] = json.dumps([str(v) for v in labels])
            ds.attrs["kind"] = "categorical"


def _fill(f: h5py.File, run: SequenceRun) -> None:
    _fill_header(f, "run", run.config_text, run.config_source)
    f.attrs.update({"strategy": run.strategy, "n_sites": run.n_sites, "data": "sequences"})
    schema = f.create_group("schema")
    schema.create_dataset("sequence_transformer", data=run.transformer_state)
    for name, release in run.synthetic.items():
        group = f.require_group("synthetic").create_group(name)
        group.attrs.update({"key": release.key, "index": release.index})
        write_plain_table(group.create_group("context"), release.context)
        write_plain_table(group.create_group("visits"), release.visits)
    f.create_dataset("rounds", data=run.rounds)
    if run.epsilon_spent:
        f.create_group("privacy").attrs["epsilon_spent"] = run.epsilon_spent
    _fill_evaluation(f, run.scores, run.worst, run.sites)


def _fill_evaluation(f: h5py.File, scores: dict[str, float], worst: dict[str, float],
                     sites: list[dict[str, float]]) -> None:
    evaluation = f.create_group("evaluation")
    evaluation.attrs.update(scores)
    if worst:
        evaluation.create_group("worst").attrs.update(worst)
    for k, site_scores in enumerate(sites):
        evaluation.require_group("sites").create_group(f"site_{k}").attrs.update(site_scores)


def write_sequence_run(path: str | Path, run: SequenceRun) -> Path:
    """Write the run file atomically (whole or absent)."""
    return atomic_write(path, lambda f: _fill(f, run))


def rewrite_sequence_evaluation(path: str | Path, scores: dict[str, float], worst: dict[str, float],
                                sites: list[dict[str, float]]) -> Path:
    """Replace a longitudinal run file's `/evaluation` and nothing else, through a copy and an atomic rename
    (a reader sees the old file or the new one). Scores the file had and `scores` lacks (the job's `wall_s`)
    are kept; the file keeps its mode.

    Parameters
    ----------
    path : str or Path
        The run file.
    scores : dict
        The temporal scores of the release (isolated: the sites' mean).
    worst : dict
        For releases judged one site alone: the worst site's value of each score (empty otherwise).
    sites : list of dict
        For releases judged one site alone: each site's scores (empty otherwise).
    """
    source = Path(path)

    def write(tmp: Path) -> None:
        shutil.copyfile(source, tmp)
        with h5py.File(tmp, "r+") as f:
            kept = dict(f["evaluation"].attrs) if "evaluation" in f else {}
            if "evaluation" in f:
                del f["evaluation"]
            _fill_evaluation(f, {**kept, **scores}, worst, sites)

    return atomic_file(source, write, stat.S_IMODE(source.stat().st_mode))


def is_sequence_run(f: h5py.File) -> bool:
    """Whether an open run file holds visit sequences rather than tables."""
    return f.attrs.get("data") == "sequences"


def read_sequences(f: h5py.File, name: str = "pooled") -> Sequences:
    """The stored release `name` back as `Sequences`."""
    group = f["synthetic"][name]
    return Sequences(read_table(group["context"]), read_table(group["visits"]), str(group.attrs["key"]),
                     str(group.attrs["index"]))


def long_format(release: Sequences) -> pd.DataFrame:
    """One row per visit: the key, the visit time, the patient's context columns, then the visit's values (the
    shape `hpcsynth export` writes and `data.sequence` reads back)."""
    context = release.context
    merged = release.visits.merge(context, on=release.key, how="left", sort=False)
    order = [release.key, release.index, *release.context_columns, *release.visit_columns]
    return merged[order]


def holds_sequences(path: str | Path) -> bool:
    """Whether a run file, or every run a comparison file links, holds visit sequences (False for anything that
    is not an HDF5 file, so that the table path reports it)."""
    p = Path(path)
    if not p.is_file() or not h5py.is_hdf5(p):
        return False
    with h5py.File(p, "r") as f:
        if f.attrs.get("kind") == "comparison":
            names = compared_strategies(f)
            return bool(names) and all(is_sequence_run(f["runs"][name]) for name in names)
        return is_sequence_run(f)
