"""Where a site's rows come from: the built-in MDS simulator, one table with a site column, or a file per site.

`load_site` returns only the rows of the requested site: the table is filtered right after reading, before
anything else sees it, so the rest of a rank's work never holds another site's rows. The id and site columns
are dropped (ids are never synthesised) and the site's rows are split into training and held-out rows with a
seed of the site's own, so the split is reproducible and independent of the number of ranks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hpcsynth.config import ConfigError, DataConfig
from hpcsynth.data.schema import DataError


@dataclass
class SiteData:
    """One site's rows, split, with the column declarations that came with the source."""

    site: int | None
    train: pd.DataFrame
    holdout: pd.DataFrame
    categorical: list[str] = field(default_factory=list)
    time: str | None = None
    event: str | None = None


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame; problems become one-line errors naming the file."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a CSV or Parquet file")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if suffix in (".csv", ".txt", ".gz"):
            return pd.read_csv(p)
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise DataError(f"{p}: cannot be read as {suffix[1:]} ({str(err).splitlines()[0]})") from None
    raise DataError(f"{p}: unknown file type {suffix!r}; expected .csv or .parquet")


def count_sites(cfg: DataConfig) -> int:
    """How many sites the data defines (without reading rows where the config says it)."""
    if cfg.sites is not None:
        return len(cfg.sites)
    if cfg.n_sites is not None:
        return cfg.n_sites
    if cfg.builtin is not None:
        return 3
    return 1


def _builtin(cfg: DataConfig, n_sites: int, seed: int) -> tuple[pd.DataFrame, dict]:
    from hpcsynth.data.mds import MDS_METADATA, simulate_mds

    return simulate_mds(n_patients=cfg.n_patients, n_sites=n_sites, seed=seed), MDS_METADATA


def _select_site(frame: pd.DataFrame, column: str, site: int, n_sites: int, source: str) -> pd.DataFrame:
    """Site k is the k-th smallest value of the site column; the count of values must match the sites."""
    if column not in frame.columns:
        raise DataError(f"{source}: site column {column!r} not found (columns: {', '.join(map(str, frame.columns))})")
    values = sorted(frame[column].dropna().unique(), key=str)
    if len(values) != n_sites:
        raise DataError(f"{source}: site column {column!r} has {len(values)} distinct values but the job has {n_sites} sites")
    return frame[frame[column] == values[site]]


def _raw_site(cfg: DataConfig, site: int | None, n_sites: int, seed: int) -> tuple[pd.DataFrame, dict, str]:
    if cfg.sites is not None:
        if site is None:
            frames = [read_table(p) for p in cfg.sites]
            return pd.concat(frames, ignore_index=True), {}, "data.sites"
        return read_table(cfg.sites[site]), {}, cfg.sites[site]
    if cfg.builtin is not None:
        frame, meta = _builtin(cfg, n_sites, seed)
        source = f"builtin {cfg.builtin}"
    else:
        frame, meta, source = read_table(cfg.path), {}, str(cfg.path)
    column = cfg.site_column or meta.get("site_column")
    if site is None or n_sites == 1:
        return frame, meta, source
    if column is None:
        raise ConfigError(f"data.site_column: needed to split {source} into {n_sites} sites")
    return _select_site(frame, column, site, n_sites, source), meta, source


def split_holdout(frame: pd.DataFrame, share: float, seed: int, site: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reproducible random share of the site's rows held out for evaluation."""
    rng = np.random.default_rng([seed, 0 if site is None else site + 1, 7])
    held = rng.random(len(frame)) < share
    return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)


def load_site(cfg: DataConfig, site: int | None, n_sites: int, seed: int) -> SiteData:
    """Site `site`'s rows (all sites pooled when `site` is None: the one-process centralized baseline)."""
    frame, meta, source = _raw_site(cfg, site, n_sites, seed)
    drop = set(cfg.id) | set(meta.get("id_columns", [])) | {cfg.site_column or meta.get("site_column")}
    frame = frame.drop(columns=[c for c in frame.columns if c in drop])
    where = source if site is None else f"{source} (site {site})"
    if frame.empty:
        raise DataError(f"{where}: no rows")
    if frame.columns.duplicated().any():
        raise DataError(f"{where}: duplicate column names {sorted(set(frame.columns[frame.columns.duplicated()]))}")
    train, holdout = split_holdout(frame, cfg.holdout, seed, site)
    if train.empty:
        raise DataError(f"{where}: no training rows left after holding out {cfg.holdout:.0%}")
    return SiteData(site, train, holdout,
                    categorical=list(cfg.categorical) or list(meta.get("categorical", [])),
                    time=cfg.time or meta.get("time"), event=cfg.event or meta.get("event"))
