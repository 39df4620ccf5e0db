"""`hpcsynth evaluate RUN.h5`: recompute every score of a run (or of each run of a comparison) against real rows,
write them into the run file's `/evaluation` and write the HTML report.

Every score answers one question: how well does the released table represent the consortium's pooled held-out
rows (`hpcsynth.evaluate.judge`)? The real rows come from `--real FILE` (it replaces the held-out rows) or are
regenerated from the job's own configuration stored in `/config`: the same sources, seed and split give the same
training and held-out rows, and `data.builtin` names the cohort whose columns the evaluation looks at. Under
`mpiexec -n K` (K the run's sites) rank k loads only site k's rows; in one process the K sites run as K threads
that take turns (`hpcsynth.comm.SitesInOneProcess`), each loading only its own rows, so both give the figures
the training job gave. The run file is rewritten atomically.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import yaml

from hpcsynth.comm import Communicator, SitesInOneProcess
from hpcsynth.config import ConfigError, from_dict
from hpcsynth.data.cohorts import COHORTS, Cohort
from hpcsynth.data.sources import Declarations, load_site, prepare, read_table
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.judge import Judge
from hpcsynth.evaluate.report import RunSection, write_report
from hpcsynth.evaluate.suite import EvalSpec, Evaluation
from hpcsynth.evaluate.whitebox import SCORE, rebuild, whitebox_membership_auroc, whitebox_note
from hpcsynth.federated.registry import STRATEGIES
from hpcsynth.io.evaluation import write_evaluation
from hpcsynth.io.runfile import compared_strategies
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
            return [(name, (p.parent / f["runs"].get(name, getlink=True).filename).resolve())
                    for name in compared_strategies(f)]
        if "synthetic" not in f:
            raise ConfigError(f"{p}: no synthetic table to evaluate")
        return [(str(f.attrs["strategy"]), p)]


def site_tables(path: Path) -> list[str]:
    """The names of a run's per-site synthetic tables (`site_0`, ...), in site order."""
    with h5py.File(path, "r") as f:
        names = [k for k in f["synthetic"] if k.startswith("site_")]
    return sorted(names, key=lambda k: int(k.split("_")[1]))


def real_rows(path: Path, real: str | None, comm: Communicator) -> RealRows:
    """This site's real rows (rank or thread k: site k's, split exactly as the job split them; a run of one
    process: every site's, pooled as the job pooled them)."""
    with h5py.File(path, "r") as f:
        text = f["config"][()]
        text = text.decode() if isinstance(text, bytes) else str(text)
        n_sites = int(f.attrs["n_sites"])
    ranks = len(site_tables(path))
    cfg = from_dict(yaml.safe_load(text), source=f"{path}:/config", text=text)
    if comm.size != ranks and not (comm.size == 1 and ranks == 1):
        raise ConfigError(f"{path}: the run had {ranks} sites; evaluate it under `mpiexec -n {ranks}` or in one "
                          "process")
    site = load_site(cfg.data, comm.rank if ranks > 1 else None, n_sites, cfg.seed)
    holdout, labels = site.holdout, np.full(len(site.holdout), comm.rank)
    if real is not None:  # one copy of the given rows: rank 0 holds them, so counts are not summed K times
        holdout = prepare(read_table(real), site.declared, str(real))
        holdout = holdout if comm.is_root else holdout.iloc[:0]
        labels = np.zeros(len(holdout), dtype=int)
    return RealRows(site.train, holdout, labels, max(ranks, 1), site.declared, cfg.seed, COHORTS.get(cfg.data.builtin))


def scoring_transformer(rows: RealRows, comm: Communicator) -> TableTransformer:
    """The quantile transform the job scored with, fitted from merged statistics of the training rows."""
    return TableTransformer.declared(rows.declared).fit(rows.train, comm)


def make_judge(path: Path, real: str | None, comm: Communicator, columns: dict | None = None) -> Judge:
    """This site's share of the judge of a run (collective). `columns` overrides the inferred column choices
    (e.g. {"quasi": [...], "sensitive": [...]})."""
    rows = real_rows(path, real, comm)
    transformer = scoring_transformer(rows, comm)
    spec = replace(EvalSpec.default(transformer, rows.cohort, rows.seed), **(columns or {}))
    if rows.declared.time_unit is not None:  # data.time_unit (or the named cohort's): td-AUROC at 1, 3, 5 years
        spec = replace(spec, time_unit=rows.declared.time_unit)
    missing = [c for key in ("quasi", "sensitive") for c in getattr(spec, key) if c not in transformer.columns]
    if missing:
        raise ConfigError(f"{path}: column {missing[0]!r} (--quasi/--sensitive) not in the run's schema")
    return Judge(rows.train, rows.holdout, transformer, comm, spec, rows.n_sites, rows.site)


def releases_per_site(path: Path) -> bool:
    """Whether the run's strategy releases one table per site (isolated) rather than one generator's."""
    with h5py.File(path, "r") as f:
        name = str(f.attrs["strategy"])
    if name not in STRATEGIES:
        raise ConfigError(f"{path}: unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")
    return STRATEGIES[name].releases_per_site


def _rounds(path: Path) -> pd.DataFrame | None:
    with h5py.File(path, "r") as f:
        return pd.DataFrame(f["rounds"][()]) if "rounds" in f else None


def whitebox_score(path: Path, comm: Communicator) -> tuple[float, str | None]:
    """The white-box membership AUROC on the run's weights (collective) and, where the family has no per-row
    loss, why it is NaN. Each site attacks the weights its release came from (`/checkpoint/params`: the shared
    row, or its own) with its own training and held-out rows, whatever `--real` gives the judge."""
    with h5py.File(path, "r") as f:
        if "checkpoint" not in f:
            return float("nan"), "no /checkpoint/params in the run file"
        params = f["checkpoint/params"][()]
        transformer = TableTransformer.from_state(f["schema/transformer"].asstr()[()])
        text = f["config"][()]
    text = text.decode() if isinstance(text, bytes) else str(text)
    cfg = from_dict(yaml.safe_load(text), source=f"{path}:/config", text=text)
    rows = real_rows(path, None, comm)
    model = rebuild(asdict(cfg.model), cfg.seed, transformer, params[0 if len(params) == 1 else comm.rank])
    return whitebox_membership_auroc(model, rows.train, rows.holdout, comm, cfg.seed), whitebox_note(model)


def evaluate_run(path: Path, real: str | None, comm: Communicator, columns: dict | None = None,
                 own_site: bool = False) -> Evaluation:
    """Evaluate one run file's release against the consortium's held-out rows (collective) and, on rank 0,
    write its `/evaluation`. `own_site`: also score each site's release against that site's own rows."""
    judge = make_judge(path, real, comm, columns)
    with h5py.File(path, "r") as f:
        tables = [read_stored(f["synthetic"][name]) for name in site_tables(path)]
    per_site = releases_per_site(path)
    result = judge.release(tables, per_site)
    result.scores[SCORE], note = whitebox_score(path, comm)
    if note is not None:
        result.notes[SCORE] = note
    if own_site:
        result.own_site = judge.own_site(tables, per_site) or []
    if comm.is_root:
        write_evaluation(path, result)
    return result


def evaluate_file(path: str | Path, real: str | None, out: str | Path | None, comm: Communicator,
                  columns: dict | None = None, own_site: bool = False) -> list[RunSection]:
    """Evaluate a run or comparison file, update every run file and (rank 0) write the report. In one process,
    a run of K sites is evaluated by K threads taking turns, each holding only its site's rows."""
    runs = run_files(path)

    def sections(c: Communicator) -> list[RunSection]:
        return [RunSection(name, evaluate_run(run, real, c, columns, own_site), _rounds(run)) for name, run in runs]

    ranks = len(site_tables(runs[0][1]))
    found = SitesInOneProcess(ranks).run(sections)[0] if comm.size == 1 and ranks > 1 else sections(comm)
    if comm.is_root:
        report = Path(out) if out else Path(path).with_suffix(".html")
        write_report(report, found, f"hpcsynth evaluation: {Path(path).name}")
    return found
