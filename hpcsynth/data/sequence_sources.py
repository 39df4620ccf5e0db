"""Where a site's patients come from when the rows are visits: a named longitudinal cohort, one long table split
by a site column or a partitioner over patients, or a long file per site. The parallel of
`hpcsynth.data.sources.load_site`, with the same conventions: only the requested site's patients are kept, right
after reading; id and site columns are dropped; the split into training and held-out data is seeded per site;
every problem is one line naming the file (and site) and the column or option.

Sites are split by patient, never by visit: a site column must be constant within a patient, and a partitioner
assigns the rows of the context table (one per patient). Where the sites come as files, only the collective
`check_sites_disjoint` can see a patient on two sites; a job calls it right after loading.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hpcsynth.data.declaration import DataConfig, Declarations
from hpcsynth.data.longitudinal import LONGITUDINAL, load_longitudinal
from hpcsynth.data.partition import assign_sites
from hpcsynth.data.schema import DataError
from hpcsynth.data.sequences import Sequences, check_one_site_per_patient, sequences_from_long, split_patients
from hpcsynth.data.sources import (
    _partition,
    _select_by_column,
    apply_zero_time,
    check_site,
    count_sites,
    declarations,
    read_table,
    split_judged,
)

if TYPE_CHECKING:
    from hpcsynth.comm import Communicator


@dataclass
class SiteSequences:
    """One site's patients, split by patient, with the declarations that came with the source.

    Parameters
    ----------
    site : int or None
        The site (None: every site pooled, the one-process centralized baseline).
    train, holdout : Sequences
        The training and held-out patients (context and visits).
    declared : Declarations
        The column declarations (categorical columns of either table, survival columns of the context).
    key, index : str
        The patient key and the visit time column (days since the patient's first visit).
    partition : dict
        How the patients were split into sites (kind, column, sizes), empty for a site column or files.
    site_patients : int
        The site's patients before the split.
    """

    site: int | None
    train: Sequences
    holdout: Sequences
    declared: Declarations = field(default_factory=Declarations)
    key: str = ""
    index: str = ""
    partition: dict = field(default_factory=dict)
    site_patients: int = 0


def is_longitudinal(cfg: DataConfig) -> bool:
    """True where the job's rows are visits: a named longitudinal cohort, or data.sequence given."""
    return cfg.builtin in LONGITUDINAL or cfg.sequence is not None


def count_sequence_sites(cfg: DataConfig) -> int:
    """How many sites the data defines: as `count_sites`, and 3 for the simulated follow-up when unsaid."""
    cohort = LONGITUDINAL.get(cfg.builtin)
    if cohort is not None and cohort.simulated and cfg.n_sites is None and cfg.partition is None:
        return 3
    return count_sites(cfg)


def sequence_declarations(cfg: DataConfig) -> tuple[Declarations, str, str, list[str]]:
    """The declarations, the key, the index and the context columns: the job's, completed by a named
    longitudinal cohort's where the job is silent."""
    decl = declarations(cfg)
    cohort = LONGITUDINAL.get(cfg.builtin)
    if cohort is None:
        decl = replace(decl, ends={c: list(v) for c, v in cfg.sequence.ends.items()})
        return decl, cfg.sequence.key, cfg.sequence.index, list(cfg.context)
    decl = replace(decl, categorical=list(cfg.categorical) or list(cohort.categorical),
                   time=cfg.time or cohort.time, event=cfg.event or cohort.event,
                   time_unit=cfg.time_unit or cohort.time_unit, visit_event=cohort.visit_event,
                   ends={c: list(v) for c, v in cohort.ends.items()},
                   site_column=cfg.site_column or (cohort.site_column if cfg.partition is None else None))
    return decl, cohort.key, cohort.index, []


def _read(path: str, key: str, index: str, context: list[str], decl: Declarations) -> Sequences:
    """A long-format file as `Sequences` (the site column, if any, is static: it joins the context)."""
    static = [*context, *([decl.site_column] if decl.site_column and decl.site_column not in context else [])]
    frame = read_table(path)
    if decl.site_column and decl.site_column not in frame.columns:
        raise DataError(f"{path}: site column {decl.site_column!r} not found")
    return sequences_from_long(frame, key, index, static, path)


def _pooled_files(paths: list[str], key: str, index: str, context: list[str], decl: Declarations) -> Sequences:
    """Every site file's patients in one `Sequences` (the centralized baseline); a key in two files is refused."""
    parts = [_read(p, key, index, context, decl) for p in paths]
    for path, part in zip(paths[1:], parts[1:]):
        if set(part.visits.columns) != set(parts[0].visits.columns):
            differ = sorted(set(part.visits.columns) ^ set(parts[0].visits.columns))
            raise DataError(f"{path}: different columns than {paths[0]}: {differ}")
    seen = pd.concat([p.context[key] for p in parts], ignore_index=True)
    if seen.duplicated().any():
        raise DataError(f"data.sites: {int(seen.duplicated().sum())} patients have visits in more than one site "
                        f"file (such as {seen[seen.duplicated()].iloc[0]!r}); all visits of a patient must be on one "
                        f"site")
    return Sequences(pd.concat([p.context for p in parts], ignore_index=True),
                     pd.concat([p.visits for p in parts], ignore_index=True), key, index)


def _raw_site(cfg: DataConfig, decl: Declarations, key: str, index: str, context: list[str], site: int | None,
              n_sites: int, seed: int) -> tuple[Sequences, str, dict]:
    """This site's patients (all when `site` is None), where they came from, and the partition used."""
    if cfg.sites is not None:
        if site is None:
            return _pooled_files(cfg.sites, key, index, context, decl), ", ".join(cfg.sites), {}
        return _read(cfg.sites[site], key, index, context, decl), cfg.sites[site], {}
    if cfg.builtin is not None:
        seqs, source = load_longitudinal(cfg.builtin, cfg.n_patients, n_sites, seed), f"builtin {cfg.builtin}"
    else:
        seqs, source = _read(cfg.path, key, index, context, decl), str(cfg.path)
    part = _partition(cfg, decl, seqs.context, n_sites, seed)
    if part is not None:
        sites = assign_sites(seqs.context, part)
        record = {"kind": part.kind, "column": part.column or "", "alpha": part.alpha, "seed": seed,
                  "sizes": np.bincount(sites, minlength=n_sites).tolist()}
        keep = seqs if site is None else seqs.select(seqs.context[key][sites == site])
        return keep, source, record
    if decl.site_column is not None and n_sites > 1:
        chosen = [_select_by_column(seqs.context, decl.site_column, s, n_sites, source)
                  for s in ([0] if site is None else [site])]
        if site is not None:
            return seqs.select(chosen[0][key]), source, {"kind": "column", "column": decl.site_column}
    elif site is not None and n_sites > 1:
        raise DataError(f"data.site_column: needed to split {source} into {n_sites} sites (or give data.partition)")
    return seqs, source, {}


def _check_tables(seqs: Sequences, decl: Declarations, where: str) -> None:
    """The checks of `check_site` on each table, with each declaration applied to the table that holds it."""
    static, varying = set(seqs.context_columns), set(seqs.visit_columns)
    for option, column in (("data.time", decl.time), ("data.event", decl.event)):
        if column is not None and column not in static:
            place = "a per-visit column" if column in varying else "not found"
            raise DataError(f"{where}: column {column!r} ({option}) {place}; survival columns are context columns")
    for column in [*decl.categorical, *decl.kinds]:
        if column not in static | varying:
            option = "data.categorical" if column in decl.categorical else f"data.kinds.{column}"
            raise DataError(f"{where}: column {column!r} ({option}) not found")
    for column in decl.ends:
        if column not in varying:
            raise DataError(f"{where}: column {column!r} (data.sequence.ends) is not a per-visit column")
    early = seqs.ended_early(decl.ends)
    if len(early):
        levels = "; ".join(f"{c}: {', '.join(v if isinstance(v, str) else f'{v:g}' for v in values)}"
                           for c, values in decl.ends.items())
        raise DataError(f"{where}: patient {early[0]!r} has visits after one at a level of data.sequence.ends "
                        f"({levels}), which ends follow-up")
    for table, columns, label in ((seqs.context, static, "context"), (seqs.visits, varying, "visits")):
        mine = replace(decl, categorical=[c for c in decl.categorical if c in columns],
                       kinds={c: k for c, k in decl.kinds.items() if c in columns},
                       time=decl.time if label == "context" else None, event=decl.event if label == "context" else None,
                       target=decl.target if decl.target in columns else None)
        if columns:
            check_site(table[sorted(columns, key=list(table.columns).index)], mine, f"{where} ({label})")


def load_site_sequences(cfg: DataConfig, site: int | None, n_sites: int, seed: int) -> SiteSequences:
    """Site `site`'s patients (every site pooled when `site` is None), split into training and held-out patients.

    Parameters
    ----------
    cfg : DataConfig
        The job's data section: a named longitudinal cohort (data.builtin), or data.sequence with a long table
        (data.path, split by data.site_column or data.partition) or a long file per site (data.sites).
    site : int or None
        The site to load; None pools every site (the centralized baseline in one process).
    n_sites : int
        The job's sites (`count_sequence_sites`).
    seed : int
        The job's seed: the simulator's, the partitioner's and the held-out draw's.

    Raises
    ------
    DataError
        One line naming the file (and site) and the column or option. Local to this site: a job loads under
        `agree` so that every rank learns of it, then calls `check_sites_disjoint`.
    """
    decl, key, index, context = sequence_declarations(cfg)
    seqs, source, partition = _raw_site(cfg, decl, key, index, context, site, n_sites, seed)
    where = source if site is None else f"{source} (site {site})"
    if seqs.n_patients == 0:
        raise DataError(f"{where}: no patients")
    missing = [c for c in decl.id_columns if c != key and c not in seqs.context.columns and
               c not in seqs.visits.columns]
    if missing:
        raise DataError(f"{where}: id column {missing[0]!r} (data.id) not found")
    dropped = {*decl.id_columns, *([decl.site_column] if decl.site_column else [])} - {key}
    seqs = seqs.drop(sorted(dropped))
    decl = replace(decl, categorical=[c for c in decl.categorical if c not in dropped],
                   kinds={c: k for c, k in decl.kinds.items() if c not in dropped})
    _check_tables(seqs, decl, where)
    seqs = replace(seqs, context=apply_zero_time(seqs.context, decl, f"{where} (context)"))
    train, holdout = split_judged(seqs, cfg, seed, site, split_patients)
    if train.n_patients == 0:
        raise DataError(f"{where}: no training patients left after holding out {cfg.holdout:.0%}"
                        + (f" and {cfg.validation:.0%} for validation" if cfg.validation else ""))
    return SiteSequences(site, train, holdout, decl, key, index, partition, site_patients=seqs.n_patients)


def check_sites_disjoint(data: SiteSequences, comm: Communicator, seed: int, where: str = "data.sites") -> None:
    """Collective: every rank stops with the same one line if a patient's visits are on two sites (salted key
    hashes are exchanged, never keys; `check_one_site_per_patient`)."""
    keys = pd.concat([data.train.context[data.key], data.holdout.context[data.key]], ignore_index=True)
    check_one_site_per_patient(keys, comm, seed, where)
