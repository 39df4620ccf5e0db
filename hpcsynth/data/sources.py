"""Where a site's rows come from: a named cohort, one table split by a site column or a partitioner, or a file
per site; and the checks that turn malformed input into one clear message.

`load_site` returns only the rows of the requested site: a table is filtered right after reading, before
anything else sees it, so the rest of a rank's work never holds another site's rows. The id and site columns
are dropped (ids are never synthesised) and the site's rows are split into training and held-out rows with a
seed of the site's own, so the split is reproducible and independent of the number of ranks.

Every problem found here names the file (and site) and the column or option; problems that only one site has
stop the job from that site's rank.
"""
from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from hpcsynth.data.cohorts import COHORTS, load_cohort
from hpcsynth.data.declaration import DataConfig, Declarations
from hpcsynth.data.partition import Partition, assign_sites
from hpcsynth.data.schema import DataError
from hpcsynth.messages import ConfigError, warn


@dataclass
class SiteData:
    """One site's rows, split, with the column declarations that came with the source."""

    site: int | None
    train: pd.DataFrame
    holdout: pd.DataFrame
    declared: Declarations = field(default_factory=Declarations)
    partition: dict = field(default_factory=dict)
    site_rows: int = 0

    def shard(self, index: int, count: int) -> SiteData:
        """Rank `index` of the `count` ranks of this site: every count-th training row; the held-out rows (and
        the count of times the zero-time rule changed) stay with the site's first rank, which evaluates for the
        site."""
        declared = self.declared if index == 0 else replace(self.declared, zero_time_rows=0)
        return replace(self, train=self.train.iloc[index::count].reset_index(drop=True),
                       holdout=self.holdout if index == 0 else self.holdout.iloc[0:0], declared=declared)

    @property
    def categorical(self) -> list[str]:
        return self.declared.categorical

    @property
    def time(self) -> str | None:
        return self.declared.time

    @property
    def event(self) -> str | None:
        return self.declared.event


# -- reading files ----------------------------------------------------------------------------------------
def _csv_header(p: Path) -> list[str]:
    with open(p, newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def _read_csv(p: Path) -> pd.DataFrame:
    try:
        header = _csv_header(p)
    except UnicodeDecodeError as err:
        raise DataError(f"{p}: not UTF-8 text (byte {err.start}); re-save the file as UTF-8") from None
    if not header:
        raise DataError(f"{p}: empty file")
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise DataError(f"{p}: duplicate column names {duplicated}")
    return pd.read_csv(p)


def _read_hdf5(p: Path) -> pd.DataFrame:
    """One 1-D dataset per column in the file's root (the layout of a run file's tables)."""
    with h5py.File(p, "r") as f:
        columns = {}
        for name, ds in f.items():
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
                raise DataError(f"{p}: {name!r} is not a 1-D column dataset")
            data = ds[()]
            columns[name] = data.astype(str) if data.dtype.kind in "SO" else data
    return pd.DataFrame(columns)


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV, Parquet or HDF5 table as a DataFrame; every problem is one line naming the file."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a CSV, Parquet or HDF5 file")
    suffix = p.suffix.lower()
    readers = {".csv": _read_csv, ".txt": _read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet,
               ".h5": _read_hdf5, ".hdf5": _read_hdf5}
    if suffix not in readers:
        raise DataError(f"{p}: unknown file type {suffix!r}; expected .csv, .parquet or .h5")
    try:
        return readers[suffix](p)
    except DataError:
        raise
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise DataError(f"{p}: cannot be read as {suffix[1:]} ({str(err).splitlines()[0]})") from None


# -- sites ---------------------------------------------------------------------------------------------------
def count_sites(cfg: DataConfig) -> int:
    """How many sites the data defines (without reading rows where the config says it)."""
    if cfg.sites is not None:
        return len(cfg.sites)
    if cfg.partition is not None and cfg.partition.n_sites is not None:
        return cfg.partition.n_sites
    if cfg.n_sites is not None:
        return cfg.n_sites
    return 3 if cfg.builtin == "mds" else 1


def declarations(cfg: DataConfig) -> Declarations:
    """The config's declarations, completed by the named cohort's own where the config is silent."""
    cohort = COHORTS.get(cfg.builtin) if cfg.builtin else None
    return Declarations(
        categorical=list(cfg.categorical) or list(cohort.categorical if cohort else ()),
        kinds=dict(cfg.kinds),
        time=cfg.time or (cohort.time if cohort else None),
        event=cfg.event or (cohort.event if cohort else None),
        time_unit=cfg.time_unit or (cohort.time_unit if cohort else None),
        target=cfg.target,
        id_columns=list(cfg.id) or list(cohort.id_columns if cohort else ()),
        site_column=cfg.site_column or (cohort.site_column if cohort and cfg.partition is None else None),
        bounds=dict(cfg.bounds),
        levels=dict(cfg.levels),
        zero_time=cfg.zero_time,
    )


def _select_by_column(frame: pd.DataFrame, column: str, site: int, n_sites: int, source: str) -> pd.DataFrame:
    """Site k is the k-th smallest value of the site column; the count of values must match the sites."""
    if column not in frame.columns:
        raise DataError(f"{source}: site column {column!r} not found (columns: {', '.join(map(str, frame.columns))})")
    values = sorted(frame[column].dropna().unique(), key=lambda v: (str(type(v)), v))
    if len(values) != n_sites:
        raise DataError(f"{source}: site column {column!r} has {len(values)} distinct values but the job has "
                        f"{n_sites} sites")
    return frame[frame[column] == values[site]]


def _partition(cfg: DataConfig, decl: Declarations, frame: pd.DataFrame, n_sites: int, seed: int) -> Partition | None:
    """The configured partitioner; for a named cohort whose own sites do not match the job's (none, or 18
    institutions for 3 ranks), an IID split, so that any cohort runs by changing the `builtin` line alone."""
    if cfg.partition is not None:
        return Partition(cfg.partition.kind, n_sites, cfg.partition.column, cfg.partition.alpha, seed)
    if cfg.builtin is None or n_sites == 1 or cfg.site_column is not None:
        return None
    column = decl.site_column
    if column is not None and frame[column].nunique() == n_sites:
        return None
    decl.site_column = None
    return Partition("iid", n_sites, seed=seed)


def _raw_site(cfg: DataConfig, decl: Declarations, site: int | None, n_sites: int,
              seed: int) -> tuple[pd.DataFrame, str, dict]:
    """This site's raw rows (all rows when `site` is None), where they came from, and the partition used."""
    if cfg.sites is not None:
        if site is None:
            frames = [prepare(read_table(p), decl, p) for p in cfg.sites]
            for path, frame in zip(cfg.sites, frames):
                if set(frame.columns) != set(frames[0].columns):
                    differ = sorted(set(frame.columns) ^ set(frames[0].columns))
                    raise DataError(f"{path}: different columns than {cfg.sites[0]}: {differ}")
            return pd.concat(frames, ignore_index=True), ", ".join(cfg.sites), {}
        return read_table(cfg.sites[site]), cfg.sites[site], {}
    if cfg.builtin is not None:
        frame, source = load_cohort(cfg.builtin, cfg.n_patients, n_sites, seed), f"builtin {cfg.builtin}"
    else:
        frame, source = read_table(cfg.path), str(cfg.path)
    part = _partition(cfg, decl, frame, n_sites, seed)
    if part is not None:
        sites = assign_sites(frame, part)
        record = {"kind": part.kind, "column": part.column or "", "alpha": part.alpha, "seed": seed,
                  "sizes": np.bincount(sites, minlength=n_sites).tolist()}
        return (frame if site is None else frame[sites == site]), source, record
    if site is None and decl.site_column is not None and n_sites > 1:
        _select_by_column(frame, decl.site_column, 0, n_sites, source)  # the same checks as a split
    if site is None or n_sites == 1:
        return frame, source, {}
    if decl.site_column is None:
        raise ConfigError(f"data.site_column: needed to split {source} into {n_sites} sites (or give data.partition)")
    return _select_by_column(frame, decl.site_column, site, n_sites, source), source, {"kind": "column",
                                                                                       "column": decl.site_column}


# -- checks ----------------------------------------------------------------------------------------------------
def _check_declared(frame: pd.DataFrame, decl: Declarations, where: str) -> None:
    named = {"data.time": decl.time, "data.event": decl.event, "data.target": decl.target}
    named.update({"data.categorical": c for c in decl.categorical})
    named.update({f"data.kinds.{c}": c for c in decl.kinds})
    for option, column in named.items():
        if column is not None and column not in frame.columns:
            raise DataError(f"{where}: column {column!r} ({option}) not found")


def _check_text_in_numbers(frame: pd.DataFrame, decl: Declarations, where: str) -> None:
    """A text column whose values are mostly numbers is a numeric column with typos ('<5', 'n/a', '1,2')."""
    for column in frame.columns:
        values = frame[column].dropna()
        if pd.api.types.is_numeric_dtype(values) or values.empty or column in decl.categorical:
            continue
        numbers = pd.to_numeric(values.astype(str).str.strip(), errors="coerce")
        if numbers.notna().mean() >= 0.5 and numbers.isna().any():
            bad = values[numbers.isna()].astype(str).unique()[:3].tolist()
            raise DataError(f"{where}: column {column!r} mixes numbers and text ({numbers.isna().sum()} values such "
                            f"as {bad}); clean them or declare the column in data.categorical")


def _check_numbers(frame: pd.DataFrame, where: str) -> None:
    for column in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column]):
            values = frame[column].to_numpy(dtype=float, na_value=np.nan)
            if np.isinf(values).any():
                raise DataError(f"{where}: column {column!r} has {int(np.isinf(values).sum())} infinite values")


def _check_survival(frame: pd.DataFrame, decl: Declarations, where: str) -> None:
    if decl.time is not None:
        times = pd.to_numeric(frame[decl.time], errors="coerce")
        if (times.isna() & frame[decl.time].notna()).any():
            raise DataError(f"{where}: survival time column {decl.time!r} (data.time) holds non-numbers")
        if (times < 0).any():
            raise DataError(f"{where}: survival time column {decl.time!r} (data.time) has {int((times < 0).sum())} "
                            f"negative values; survival times must be positive (a time of 0 becomes data.zero_time)")
    if decl.event is not None:
        events = frame[decl.event].dropna()
        numbers = pd.to_numeric(events.map(lambda v: int(v) if isinstance(v, (bool, np.bool_)) else v), errors="coerce")
        bad = events[~numbers.isin([0, 1])]
        if not bad.empty:
            raise DataError(f"{where}: event column {decl.event!r} (data.event) must be 0 or 1; "
                            f"found {bad.unique()[:3].tolist()}")


def _warn_many_levels(frame: pd.DataFrame, decl: Declarations, where: str) -> None:
    for column in frame.columns:
        values = frame[column].dropna()
        categorical = column in decl.categorical or not (pd.api.types.is_numeric_dtype(values) or
                                                         pd.api.types.is_datetime64_any_dtype(values))
        if categorical and len(values) > 1 and values.nunique() > len(frame) // 2:
            warn(f"{where}: column {column!r} has {values.nunique()} levels in {len(frame)} rows; kept as categories "
                 f"(declare it in data.id if it identifies patients)")


def check_site(frame: pd.DataFrame, decl: Declarations, where: str) -> None:
    """Every check of one site's rows; the first problem found is raised as one line naming `where`."""
    if frame.empty:
        raise DataError(f"{where}: no rows")
    if frame.columns.duplicated().any():
        raise DataError(f"{where}: duplicate column names {sorted(set(frame.columns[frame.columns.duplicated()]))}")
    _check_declared(frame, decl, where)
    _check_survival(frame, decl, where)
    _check_text_in_numbers(frame, decl, where)
    _check_numbers(frame, where)
    _warn_many_levels(frame, decl, where)


HOLDOUT, VALIDATION = 7, 8  # the purpose keys of the two seeded splits


def split_holdout(frame: pd.DataFrame, share: float, seed: int, site: int | None,
                  purpose: int = HOLDOUT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reproducible random share of the site's rows held out for evaluation (`purpose` VALIDATION: the
    validation share of the training rows, an independent draw)."""
    rng = np.random.default_rng([seed, 0 if site is None else site + 1, purpose])
    held = rng.random(len(frame)) < share
    return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)


def split_judged(frame: pd.DataFrame, cfg: DataConfig, seed: int, site: int | None,
                 split: Callable = split_holdout) -> tuple:
    """The training rows and the rows the job judges its release against: the held-out share (`data.holdout`),
    or, with `data.validation`, that share of the remaining training rows, the held-out rows then left unread.
    `split` draws a share (by rows here, by patient for sequences)."""
    train, judged = split(frame, cfg.holdout, seed, site)
    if cfg.validation > 0:
        train, judged = split(train, cfg.validation, seed, site, VALIDATION)
    return train, judged


def apply_zero_time(frame: pd.DataFrame, decl: Declarations, where: str) -> pd.DataFrame:
    """Survival times of 0 become `decl.zero_time` (data.zero_time, 0.5 by default: half a day for times in
    days, the usual convention for a death on the day of inclusion), since a survival time must be positive.

    The one rule for named cohorts and users' files alike: it warns with the count, adds the count to
    `decl.zero_time_rows` (which the schema records) and runs after `check_site`, which refuses negative times."""
    if decl.time is None:
        return frame
    times = pd.to_numeric(frame[decl.time], errors="coerce")
    zero = times == 0
    if not zero.any():
        return frame
    decl.zero_time_rows += int(zero.sum())
    warn(f"{where}: survival time column {decl.time!r} (data.time) has {int(zero.sum())} times of 0; set to "
         f"{decl.zero_time:g} (data.zero_time)")
    return frame.assign(**{decl.time: times.where(~zero, decl.zero_time)})


def prepare(frame: pd.DataFrame, decl: Declarations, where: str) -> pd.DataFrame:
    """Drop the id and site columns, run every check, then apply the zero-time rule; `where` names the file
    (and site) in messages."""
    missing_ids = [c for c in decl.id_columns if c not in frame.columns]
    if missing_ids:
        raise DataError(f"{where}: id column {missing_ids[0]!r} (data.id) not found")
    frame = frame.drop(columns=[c for c in frame.columns if c in set(decl.id_columns) | {decl.site_column}])
    check_site(frame, decl, where)
    return apply_zero_time(frame, decl, where)


def load_site(cfg: DataConfig, site: int | None, n_sites: int, seed: int) -> SiteData:
    """Site `site`'s rows (all sites pooled when `site` is None: the one-process centralized baseline)."""
    decl = declarations(cfg)
    frame, source, partition = _raw_site(cfg, decl, site, n_sites, seed)
    where = source if site is None else f"{source} (site {site})"
    frame = prepare(frame, decl, where)
    train, holdout = split_judged(frame, cfg, seed, site)
    if train.empty:
        raise DataError(f"{where}: no training rows left after holding out {cfg.holdout:.0%}"
                        + (f" and {cfg.validation:.0%} for validation" if cfg.validation else ""))
    return SiteData(site, train, holdout, decl, partition, site_rows=len(frame))
