"""Patients as sequences of visits: the one shape in which longitudinal records travel between the data layer,
the sequence generators and the temporal evaluation.

A longitudinal cohort is two tables that share a key: `context` holds one row per patient (the static columns:
sex, age at entry, treatment arm, outcome) and `visits` one row per visit (the key, the visit's time since the
patient's entry in days, and the per-visit values, NaN where a value was not measured). Keeping the two apart,
rather than repeating the context on every visit, is what lets a generator draw the context once per patient
and lets the evaluation weigh patients, not visits.

A raw long table (one row per visit, the static columns repeated) or a pair of tables becomes `Sequences`
through `sequences_from_long` or `sequences_from_tables`; both refuse, in one line naming the table and the
column, what would make a sequence ambiguous: a duplicate (key, index), an index that cannot be sorted, static
columns that vary within a patient, a patient with no visits. `split_patients` holds out whole patients, with
the project's seeded convention (`hpcsynth.data.sources.split_holdout` on the context table), and
`check_one_site_per_patient` is the collective check that no patient has visits on two sites: the sites
exchange salted hashes of their keys, never the keys.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hpcsynth.data.schema import DataError
from hpcsynth.data.sources import HOLDOUT, split_holdout

if TYPE_CHECKING:
    from hpcsynth.comm import Communicator

_NS_PER_DAY = 86_400e9


@dataclass(frozen=True)
class Sequences:
    """Longitudinal records in long format.

    Parameters
    ----------
    context : pandas.DataFrame
        One row per patient: the key column and the static columns.
    visits : pandas.DataFrame
        One row per visit: the key column, the index column (days since the patient's first visit, a float,
        increasing within a patient, the first visit at 0) and the per-visit columns. Rows are sorted by key,
        then index.
    key : str
        The patient identifier column, present in both tables.
    index : str
        The visit-time column of `visits`.
    """

    context: pd.DataFrame
    visits: pd.DataFrame
    key: str
    index: str

    @property
    def context_columns(self) -> list[str]:
        """The static columns, without the key."""
        return [c for c in self.context.columns if c != self.key]

    @property
    def visit_columns(self) -> list[str]:
        """The per-visit value columns, without the key and the index."""
        return [c for c in self.visits.columns if c not in (self.key, self.index)]

    @property
    def n_patients(self) -> int:
        return len(self.context)

    def lengths(self) -> pd.Series:
        """The number of visits of each patient, in the order of `context`."""
        return self.visits.groupby(self.key, sort=False).size().reindex(self.context[self.key]).fillna(0).astype(int)

    def select(self, keys: Sequence | np.ndarray | pd.Series) -> Sequences:
        """The patients whose key is in `keys` (context and visits), in this object's order."""
        keep = pd.Index(pd.unique(pd.Series(keys)))
        context = self.context[self.context[self.key].isin(keep)].reset_index(drop=True)
        visits = self.visits[self.visits[self.key].isin(keep)].reset_index(drop=True)
        return Sequences(context, visits, self.key, self.index)

    def ended_early(self, ends: Mapping[str, Sequence]) -> np.ndarray:
        """The keys of the patients with a visit at a level of `ends` ({visit column: levels that end follow-up})
        before their last visit: what an absorbing state forbids."""
        if not ends:
            return np.empty(0, dtype=self.visits[self.key].dtype)
        ending = np.zeros(len(self.visits), dtype=bool)
        for column, levels in ends.items():
            ending |= self.visits[column].isin(list(levels)).to_numpy()
        last = ~self.visits[self.key].duplicated(keep="last").to_numpy()
        return pd.unique(self.visits[self.key].to_numpy()[ending & ~last])

    def drop(self, columns: Sequence[str]) -> Sequences:
        """Without the named static or per-visit columns (the key and the index always stay)."""
        gone = set(columns) - {self.key, self.index}
        return Sequences(self.context.drop(columns=[c for c in self.context.columns if c in gone]),
                         self.visits.drop(columns=[c for c in self.visits.columns if c in gone]), self.key, self.index)


# -- building and checking -------------------------------------------------------------------------------------
def _shown(value: object) -> object:
    """A key or index value as a message shows it (numpy scalars as plain Python)."""
    return value.item() if isinstance(value, np.generic) else value


def _require_columns(frame: pd.DataFrame, named: dict[str, Sequence[str]], where: str) -> None:
    for option, columns in named.items():
        for column in columns:
            if column not in frame.columns:
                raise DataError(f"{where}: column {column!r} ({option}) not found")


def _as_days(values: pd.Series, index: str, where: str) -> np.ndarray:
    """The index as float days: numbers are days already; datetimes (or text that reads as dates) become days
    since 1970, to be made relative to each patient's first visit. NaN where the value is missing."""
    option = f"index column {index!r} (data.sequence.index)"
    if pd.api.types.is_bool_dtype(values):
        raise DataError(f"{where}: {option} holds true/false values, not days or dates")
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.to_datetime(values)
        if getattr(stamps.dt, "tz", None) is not None:
            stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
        ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(float)
        return np.where(stamps.isna().to_numpy(), np.nan, ns / _NS_PER_DAY)
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=float, na_value=np.nan)
    present = values.notna()
    text = values[present].astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().all():
        out = np.full(len(values), np.nan)
        out[present.to_numpy()] = numbers.to_numpy(dtype=float)
        return out
    dates = pd.to_datetime(text, errors="coerce", format="mixed", utc=True)
    if dates.notna().all():
        return _as_days(pd.Series(dates.dt.tz_localize(None)).reindex(values.index), index, where)
    bad = text[dates.isna() & numbers.isna()].unique()[:3].tolist()
    raise DataError(f"{where}: {option} holds values that are neither numbers of days nor dates, such as {bad}")


def _check_index(keys: pd.Series, days: np.ndarray, raw: pd.Series, key: str, index: str, where: str) -> None:
    """Every visit has a finite time, and no patient has two visits at the same time."""
    bad = ~np.isfinite(days)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(f"{where}: index column {index!r} (data.sequence.index) is not monotone after sorting: "
                        f"{int(bad.sum())} visits have no usable time (the first: patient {_shown(keys.iloc[first])!r},"
                        f" value {_shown(raw.iloc[first])!r})")
    twice = pd.DataFrame({"k": keys.to_numpy(), "d": days}).duplicated(keep=False).to_numpy()
    if twice.any():
        first = int(np.argmax(twice))
        raise DataError(f"{where}: duplicate (key, index) ({key!r}, {index!r}): patient {_shown(keys.iloc[first])!r} "
                        f"has {int(twice.sum())} visits at {index} = {_shown(raw.iloc[first])!r}"
                        + (" (and more patients)" if twice.sum() > 2 and
                           keys[twice].nunique() > 1 else ""))


def _check_static(frame: pd.DataFrame, key: str, context: Sequence[str], where: str) -> None:
    """Each context column takes one value per patient (missing counts as a value)."""
    grouped = frame.groupby(key, sort=False, dropna=False)
    for column in context:
        varying = grouped[column].nunique(dropna=False) > 1
        if varying.any():
            patient = varying.index[int(np.argmax(varying.to_numpy()))]
            values = frame.loc[frame[key] == patient, column].drop_duplicates().tolist()[:3]
            raise DataError(f"{where}: context column {column!r} (data.context) is not constant within patient "
                            f"{_shown(patient)!r} (values {[_shown(v) for v in values]}); it varies per visit, "
                            f"so leave it out of data.context")


def _check_keys(keys: pd.Series, key: str, where: str, table: str) -> None:
    if keys.isna().any():
        raise DataError(f"{where}: key column {key!r} (data.sequence.key) has {int(keys.isna().sum())} missing "
                        f"values in the {table}")


def _normalised(context: pd.DataFrame, visits: pd.DataFrame, days: np.ndarray, key: str, index: str) -> Sequences:
    """Visits sorted by key then time, the time in days since the patient's first visit; context in key order."""
    visits = visits.assign(**{index: days})
    visits = visits.sort_values([key, index], kind="stable").reset_index(drop=True)
    first = visits.groupby(key, sort=False)[index].transform("min")
    visits[index] = (visits[index] - first).astype(float)
    visits = visits[[key, index, *[c for c in visits.columns if c not in (key, index)]]]
    context = context.sort_values(key, kind="stable").reset_index(drop=True)
    return Sequences(context, visits, key, index)


def sequences_from_long(frame: pd.DataFrame, key: str, index: str, context: Sequence[str] = (),
                        where: str = "table") -> Sequences:
    """`Sequences` from one long table: a row per visit, the static `context` columns repeated on every row.

    Parameters
    ----------
    frame : pandas.DataFrame
        The visits; every column that is not the key, the index or a context column varies per visit.
    key : str
        The patient identifier (data.sequence.key).
    index : str
        The visit time (data.sequence.index): a number of days, or datetimes (or text that reads as dates).
    context : sequence of str
        The static columns (data.context); each must be constant within a patient.
    where : str
        Names the table (and site) in messages.

    Raises
    ------
    DataError
        One line naming `where` and the column: a named column missing, a missing key, an index that cannot be
        read or sorted, a duplicate (key, index), a context column that varies within a patient.
    """
    _require_columns(frame, {"data.sequence.key": [key], "data.sequence.index": [index], "data.context": context},
                     where)
    if key in context or index in context or key == index:
        raise DataError(f"{where}: data.sequence.key, data.sequence.index and data.context must name different "
                        f"columns (key {key!r}, index {index!r})")
    _check_keys(frame[key], key, where, "visits")
    days = _as_days(frame[index], index, where)
    _check_index(frame[key], days, frame[index], key, index, where)
    _check_static(frame, key, context, where)
    static = frame[[key, *context]].drop_duplicates(subset=[key]).reset_index(drop=True)
    visits = frame.drop(columns=list(context)).reset_index(drop=True)
    return _normalised(static, visits, days, key, index)


def sequences_from_tables(context: pd.DataFrame, visits: pd.DataFrame, key: str, index: str,
                          where: str = "tables") -> Sequences:
    """`Sequences` from a context table (a row per patient) and a visits table (a row per visit).

    Parameters
    ----------
    context : pandas.DataFrame
        The key and the static columns, one row per patient.
    visits : pandas.DataFrame
        The key, the index and the per-visit columns.
    key, index : str
        As in `sequences_from_long`.
    where : str
        Names the tables (and site) in messages.

    Raises
    ------
    DataError
        As `sequences_from_long`, and: a patient twice in the context, a patient with no visits, visits of a
        patient missing from the context, a column in both tables.
    """
    _require_columns(context, {"data.sequence.key": [key]}, f"{where} (context)")
    _require_columns(visits, {"data.sequence.key": [key], "data.sequence.index": [index]}, f"{where} (visits)")
    both = sorted(set(context.columns) & set(visits.columns) - {key})
    if both:
        raise DataError(f"{where}: column {both[0]!r} is in both the context and the visits table")
    _check_keys(context[key], key, where, "context")
    _check_keys(visits[key], key, where, "visits")
    twice = context[key].duplicated()
    if twice.any():
        patient = context[key][twice].iloc[0]
        raise DataError(f"{where}: patient {_shown(patient)!r} has {int((context[key] == patient).sum())} rows in the "
                        f"context table; it needs one row per patient")
    without = ~context[key].isin(visits[key])
    if without.any():
        raise DataError(f"{where}: patient {_shown(context[key][without].iloc[0])!r} has no visits "
                        f"({int(without.sum())} patients of the context table have none)")
    unknown = ~visits[key].isin(context[key])
    if unknown.any():
        raise DataError(f"{where}: visits of patient {_shown(visits[key][unknown].iloc[0])!r} have no row in the "
                        f"context table")
    days = _as_days(visits[index], index, where)
    _check_index(visits[key], days, visits[index], key, index, where)
    return _normalised(context.reset_index(drop=True), visits.reset_index(drop=True), days, key, index)


# -- splits ---------------------------------------------------------------------------------------------------
def split_patients(sequences: Sequences, share: float, seed: int, site: int | None,
                   purpose: int = HOLDOUT) -> tuple[Sequences, Sequences]:
    """Training and held-out `Sequences`, split by patient, never by visit: the project's seeded held-out draw
    (`split_holdout`, the same seed, site, share and purpose as a table's rows) taken over the context rows."""
    train, held = split_holdout(sequences.context, share, seed, site, purpose)
    return sequences.select(train[sequences.key]), sequences.select(held[sequences.key])


# -- the collective check ----------------------------------------------------------------------------------------
def _key_text(value: object) -> str:
    """One spelling per key whatever the file's dtype: 17, 17.0 and "17" hash alike."""
    value = _shown(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def key_hashes(keys: Sequence | np.ndarray | pd.Series, seed: int) -> np.ndarray:
    """Sorted unique 64-bit BLAKE2b hashes of the keys, salted with the job's seed.

    The salt keeps the hashes of one job from being matched against another job's or a public list; it does not
    hide a key from someone who knows the seed and can enumerate the key space, which is why only the counts of
    shared hashes, never the keys or the hashes, leave the check."""
    salt = (int(seed) % 2**64).to_bytes(8, "little") + b"hpcsynth"
    out = np.fromiter((int.from_bytes(hashlib.blake2b(_key_text(k).encode(), digest_size=8, salt=salt).digest(),
                                      "little") for k in pd.unique(pd.Series(keys))), dtype=np.uint64)
    return np.unique(out)


def check_one_site_per_patient(keys: Sequence | np.ndarray | pd.Series, comm: Communicator, seed: int,
                               where: str) -> None:
    """Collective: stop every rank with the same one-line `DataError` when a patient has visits on two sites.

    Each rank contributes the salted hashes of its own keys (`key_hashes`) to one sum-Allreduce of a
    (ranks x largest site) buffer in which every other rank's row is zero, so that every rank ends with every
    site's hashes and finds the same overlaps; no key leaves its site. `where` must be the same on every rank.
    """
    mine = key_hashes(keys, seed)
    sizes = comm.Allreduce(np.eye(comm.size, dtype=np.int64)[comm.rank] * mine.size, "sum")
    table = np.zeros((comm.size, int(sizes.max(initial=0))), dtype=np.uint64)
    table[comm.rank, :mine.size] = mine
    comm.Allreduce(table, "sum")
    sets = [table[r, :sizes[r]] for r in range(comm.size)]
    shared = {}
    for a in range(comm.size):
        for b in range(a + 1, comm.size):
            n = int(np.intersect1d(sets[a], sets[b], assume_unique=True).size)
            if n:
                shared[(a, b)] = n
    if shared:
        total = int(np.unique(np.concatenate([np.intersect1d(sets[a], sets[b], assume_unique=True)
                                              for a, b in shared])).size)
        pairs = ", ".join(f"sites {a} and {b} share {n}" for (a, b), n in shared.items())
        raise DataError(f"{where}: {total} patients have visits on more than one site ({pairs}); all visits of a "
                        f"patient must be on one site (matched by salted hashes of data.sequence.key)",
                        everywhere=True)
