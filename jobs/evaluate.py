"""`hpcsynth evaluate RUN.h5`: recompute every score of a run (or of each run of a comparison) against real rows,
write them into the run file's `/evaluation` and write the HTML report.

The real rows come from `--real FILE` (it replaces the held-out rows) or are regenerated from the job's own
configuration stored in `/config`: the same sources, seed and split give the same training and held-out rows,
and `data.builtin` names the cohort whose columns the evaluation looks at. Under `mpiexec -n K` (K the run's
sites) rank k loads only site k's rows and the evaluation is federated; in one process every site's rows are
loaded, which gives the pooled figures (`docs/notes/evaluate.md`). The run file is rewritten atomically.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import yaml

from hpcsynth.comm import Communicator
from hpcsynth.config import ConfigError, from_dict
from hpcsynth.data.cohorts import COHORTS, Cohort
from hpcsynth.data.sources import Declarations, SiteData, load_site, prepare, read_table
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.report import RunSection, write_report
from hpcsynth.evaluate.suite import EvalSpec, Evaluation, evaluate
from hpcsynth.io.runfile import read_table as read_stored


@dataclass
class RealRows:
    """This rank's real rows and what the run's configuration says about them.

    Parameters
    ----------
    train, holdout : DataFrame
        This rank's training and held-out rows (one process: every site's).
    site : ndarray
        The site of every held-out row.
    n_sites : int
        The run's number of sites.
    declared : Declarations
        The data declarations (categories, survival columns, ids).
    seed : int
        The run's seed.
    cohort : Cohort or None
        The named cohort of `data.builtin`, whose columns the evaluation looks at.
    """

    train: pd.DataFrame
    holdout: pd.DataFrame
    site: np.ndarray
    n_sites: int
    declared: Declarations
    seed: int
    cohort: Cohort | None = None


def run_files(path: str | Path) -> list[tuple[str, Path]]:
    """(strategy, run file) of a run file, or of every run linked from a comparison file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such run file")
    with h5py.File(p, "r") as f:
        if f.attrs.get("kind") == "comparison":
            return [(name, (p.parent / f["runs"].get(name, getlink=True).filename).resolve()) for name in f["runs"]]
        if "synthetic" not in f:
            raise ConfigError(f"{p}: no synthetic table to evaluate")
        return [(str(f.attrs["strategy"]), p)]


def real_rows(path: Path, real: str | None, comm: Communicator) -> RealRows:
    """This rank's real rows (one process: every site's, each split exactly as its rank split it)."""
    with h5py.File(path, "r") as f:
        text = f["config"][()]
        text = text.decode() if isinstance(text, bytes) else str(text)
        n_sites = int(f.attrs["n_sites"])
        ranks = len([k for k in f["synthetic"] if k.startswith("site_")])
    cfg = from_dict(yaml.safe_load(text), source=f"{path}:/config", text=text)
    if comm.size > 1 and comm.size != ranks:
        raise ConfigError(f"{path}: the run had {ranks} sites; evaluate it under `mpiexec -n {ranks}` or in one "
                          "process")
    indices = [comm.rank] if comm.size > 1 else ([None] if ranks == 1 else list(range(ranks)))
    sites: list[SiteData] = [load_site(cfg.data, k, n_sites, cfg.seed) for k in indices]
    train = pd.concat([s.train for s in sites], ignore_index=True)
    holdout = pd.concat([s.holdout for s in sites], ignore_index=True)
    site = np.concatenate([np.full(len(s.holdout), comm.rank if k is None else k) for k, s in zip(indices, sites)])
    if real is not None:  # one copy of the given rows: rank 0 holds them, so counts are not summed K times
        holdout = prepare(read_table(real), sites[0].declared, str(real))
        holdout = holdout if comm.is_root else holdout.iloc[:0]
        site = np.zeros(len(holdout), dtype=int)
    return RealRows(train, holdout, site, max(ranks, 1), sites[0].declared, cfg.seed, COHORTS.get(cfg.data.builtin))


def scoring_transformer(rows: RealRows, comm: Communicator) -> TableTransformer:
    """The quantile transform the job scored with, fitted from merged statistics of the training rows."""
    return TableTransformer.declared(rows.declared).fit(rows.train, comm)


def write_evaluation(path: str | Path, scores: dict[str, float], directions: dict[str, str],
                     notes: dict[str, str], curves: dict[str, np.ndarray] | None = None) -> Path:
    """Replace `/evaluation` (scores kept from the job and not recomputed stay) and its `curves` (Kaplan-Meier,
    correlations, gene frequencies), through a copy and a rename."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.eval-{os.getpid()}")
    try:
        shutil.copyfile(target, tmp)
        with h5py.File(tmp, "r+") as f:
            old = dict(f["evaluation"].attrs) if "evaluation" in f else {}
            old_dir = dict(f["evaluation/directions"].attrs) if "evaluation/directions" in f else {}
            if "evaluation" in f:
                del f["evaluation"]
            group = f.create_group("evaluation")
            group.attrs.update({**old, **scores})
            group.create_group("directions").attrs.update({**old_dir, **directions})
            group.create_group("notes").attrs.update(notes)
            for name, values in (curves or {}).items():
                group.create_dataset(f"curves/{name}", data=values)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _rounds(path: Path) -> pd.DataFrame | None:
    with h5py.File(path, "r") as f:
        return pd.DataFrame(f["rounds"][()]) if "rounds" in f else None


def evaluate_run(path: Path, real: str | None, comm: Communicator, columns: dict | None = None) -> Evaluation:
    """Evaluate one run file's pooled synthetic table (collective) and, on rank 0, write its `/evaluation`.
    `columns` overrides the inferred column choices (e.g. {"quasi": [...], "sensitive": [...]})."""
    rows = real_rows(path, real, comm)
    transformer = scoring_transformer(rows, comm)
    with h5py.File(path, "r") as f:
        synthetic = read_stored(f["synthetic"]["pooled"])
    spec = replace(EvalSpec.default(transformer, rows.cohort, rows.seed), **(columns or {}))
    missing = [c for key in ("quasi", "sensitive") for c in getattr(spec, key) if c not in transformer.columns]
    if missing:
        raise ConfigError(f"{path}: column {missing[0]!r} (--quasi/--sensitive) not in the run's schema")
    result = evaluate(synthetic, rows.train, rows.holdout, transformer, comm, spec, rows.site, rows.n_sites)
    if comm.is_root:
        write_evaluation(path, result.scores, result.directions, result.notes, result.curves())
    return result


def evaluate_file(path: str | Path, real: str | None, out: str | Path | None, comm: Communicator,
                  columns: dict | None = None) -> list[RunSection]:
    """Evaluate a run or comparison file, update every run file and (rank 0) write the report."""
    sections = [RunSection(name, evaluate_run(run, real, comm, columns), _rounds(run)) for name, run in run_files(path)]
    if comm.is_root:
        report = Path(out) if out else Path(path).with_suffix(".html")
        write_report(report, sections, f"hpcsynth evaluation: {Path(path).name}")
    return sections

