"""The study file of `hpcsynth tune`: one HDF5 file per study, written atomically, readable with plain h5py.

`/study` the study file's text; `/trials` a table, one row per trial: `number`, `state` (COMPLETE, FAIL, ...),
`run` (its run file), one column per searched job key and one per objective (NaN where a trial has none), and
with IORBO `mean_rank`; `/front` the numbers of the Pareto-optimal trials (the best trial for one objective),
with the objectives and their directions as attributes; `/best` the chosen trial's job file text, ready to
run, its number and what chose it (`chosen_by`: the first objective, or the lowest mean rank with IORBO) as
attributes. `hpcsynth inspect` prints it (`describe_study`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

import hpcsynth
from hpcsynth.io.runfile import atomic_write


@dataclass
class StudyContent:
    """What a study file holds.

    Parameters
    ----------
    text, source : str
        The study file's text and path.
    trials : pandas.DataFrame
        One row per trial: number, state, run, then the parameter and objective columns.
    params : list of str
        The searched job keys (columns of `trials`).
    objectives : dict of str to {"higher", "lower"}
        The objectives (columns of `trials`) and which values are better.
    front : list of int
        The numbers of the Pareto-optimal trials.
    best : int or None
        The chosen trial (None when no trial completed); `best_job` is its job file's text.
    chosen_by : str
        What chose it: "the first objective" (the front's best on it) or "the lowest mean rank" (IORBO).
    """

    text: str
    source: str
    trials: pd.DataFrame
    params: list[str]
    objectives: dict[str, str]
    front: list[int] = field(default_factory=list)
    best: int | None = None
    best_job: str = ""
    chosen_by: str = "the first objective"


def _records(frame: pd.DataFrame) -> np.ndarray:
    """The table as HDF5 compound records: text columns as fixed-width UTF-8 as wide as their longest value."""
    records = frame.to_records(index=False)
    widths = {n: max([1, *(len(str(v).encode()) for v in frame[n])]) for n in frame.columns}
    return records.astype([(n, f"S{widths[n]}" if records.dtype[n].kind in "OU" else records.dtype[n])
                           for n in records.dtype.names])


def write_study(path: str | Path, study: StudyContent) -> Path:
    """Write the study file through a temporary file and an atomic rename."""

    def fill(f: h5py.File) -> None:
        f.attrs.update({"status": "complete", "kind": "study", "hpcsynth_version": hpcsynth.__version__,
                        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        f.create_dataset("study", data=study.text).attrs["source"] = study.source
        table = study.trials.astype({n: str for n in study.trials.columns if study.trials[n].dtype == object})
        trials = f.create_dataset("trials", data=_records(table))
        trials.attrs.update({"params": json.dumps(study.params), "objectives": json.dumps(study.objectives)})
        front = f.create_dataset("front", data=np.asarray(study.front, dtype=np.int64))
        front.attrs["objectives"] = json.dumps(study.objectives)
        if study.best is not None:
            best = f.create_dataset("best", data=study.best_job)
            best.attrs.update({"number": study.best, "chosen_by": study.chosen_by})

    return atomic_write(path, fill)


def read_trials(f: h5py.File) -> pd.DataFrame:
    """`/trials` as a DataFrame, text columns decoded."""
    table = pd.DataFrame(f["trials"][()])
    for name in table.columns:
        if table[name].dtype == object:
            table[name] = table[name].str.decode("utf-8")
    return table


def describe_study(f: h5py.File) -> list[str]:
    """The lines `hpcsynth inspect` prints for a study file: objectives, every trial, the front, the best."""
    objectives = json.loads(f["front"].attrs["objectives"])
    table = read_trials(f)
    states = table["state"].value_counts()
    lines = ["objectives: " + ", ".join(f"{k} ({d} is better)" for k, d in objectives.items()),
             f"trials: {len(table)} ({', '.join(f'{n} {s}' for s, n in states.items())})"]
    shown = table.drop(columns=["run"])
    lines += ["  " + line for line in shown.to_string(index=False, float_format=lambda x: f"{x:.4g}").splitlines()]
    lines.append("front (Pareto-optimal trials): " + (", ".join(str(n) for n in f["front"][()]) or "none"))
    if "best" in f:
        number = int(f["best"].attrs["number"])
        run = table.loc[table["number"] == number, "run"].iloc[0]
        by = f["best"].attrs.get("chosen_by", "the first objective")
        lines.append(f"best: trial {number} (by {by}), run file {run}; its job file is /best")
    else:
        lines.append("best: none (no trial completed)")
    return lines
