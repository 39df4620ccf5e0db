"""Column kinds and roles, inferred on each site and merged so that every site holds the same schema.

A site sees only its own rows, so a column can look different from one site to the next: all zeros at a site
whose panel never found the mutation, integers where another site recorded decimals. Each site infers a kind
from its rows, the kinds are exchanged (a few words per column, never values) and merged to the most general
one: binary < integer < continuous, and categorical as soon as any site holds text. Declared kinds in the
config always win.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from hpcsynth.comm import Communicator
from hpcsynth.data.dtypes import DType, dtype_of, merge_dtypes

KINDS = ("binary", "integer", "continuous", "categorical", "datetime")
ROLES = ("feature", "time", "event", "target")
_GENERALITY = {"binary": 0, "integer": 1, "continuous": 2, "datetime": 3, "categorical": 4}


class DataError(ValueError):
    """A problem with the rows themselves; the message names the file, site or column.

    `everywhere` marks a problem found collectively (every rank raises the same error), so it is reported once."""

    def __init__(self, message: str, everywhere: bool = False) -> None:
        super().__init__(message)
        self.everywhere = everywhere


@dataclass
class ColumnSpec:
    """One column: its name, its kind (how it is encoded), its role in the study and the pandas dtype it came
    in with (None where a schema predates dtypes; outputs then keep the decoded types)."""

    name: str
    kind: str
    role: str = "feature"
    dtype: DType | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "dtype": self.dtype.to_dict() if self.dtype else None}

    @classmethod
    def from_dict(cls, data: dict) -> ColumnSpec:
        dtype = data.get("dtype")
        return cls(data["name"], data["kind"], data["role"], DType.from_dict(dtype) if dtype else None)


def infer_kind(values: pd.Series) -> str | None:
    """The kind this site's values suggest, or None when the site has no value to judge by."""
    present = values.dropna()
    if present.empty:
        return None
    if pd.api.types.is_bool_dtype(present):
        return "binary"
    if pd.api.types.is_datetime64_any_dtype(present):
        return "datetime"
    if not pd.api.types.is_numeric_dtype(present):
        return "categorical"
    numbers = present.to_numpy(dtype=float)
    if np.isin(numbers, (0.0, 1.0)).all():
        return "binary"
    if np.all(np.mod(numbers, 1.0) == 0.0):
        return "integer"
    return "continuous"


def merge_kinds(kinds: list[str | None], column: str) -> str:
    """The most general kind any site reported; a column empty on every site is an error."""
    seen = [k for k in kinds if k is not None]
    if not seen:
        raise DataError(f"column {column!r}: all values are missing on every site", everywhere=True)
    return max(seen, key=_GENERALITY.__getitem__)


def infer_schema(
    frame: pd.DataFrame,
    comm: Communicator,
    declared_categorical: list[str] = (),
    time: str | None = None,
    event: str | None = None,
    kinds: dict[str, str] | None = None,
    target: str | None = None,
) -> list[ColumnSpec]:
    """Infer the shared schema of `frame`'s columns across all sites (collective: every rank calls it).

    Columns keep the order of the frame; sites must agree on the column names (checked here). Declared kinds
    (`kinds`, `declared_categorical`) win over inference; a survival time is continuous, an event binary, or
    categorical when its numeric codes go beyond 0 and 1 (0 censored, every other code one cause or state). The
    sites' dtypes travel with their kinds and merge as pooled rows would (`hpcsynth.data.dtypes`)."""
    names = list(frame.columns)
    all_names = comm.allgather(names)
    for site, other in enumerate(all_names):
        if set(other) != set(all_names[0]):
            differ = sorted(set(all_names[0]) ^ set(other))
            raise DataError(f"site {site} has different columns than site 0: {differ}", everywhere=True)
    names = list(all_names[0])
    frame = frame[names]
    local = [(infer_kind(frame[c]), dtype_of(frame[c])) for c in names]
    gathered = list(zip(*comm.allgather(local)))  # per column: every site's (kind, dtype)
    merged = [merge_kinds([k for k, _ in sites], c) for c, sites in zip(names, gathered)]
    specs = []
    for name, kind, sites in zip(names, merged, gathered):
        role = {time: "time", event: "event", target: "target"}.get(name, "feature")
        if name in declared_categorical:
            kind = "categorical"
        kind = (kinds or {}).get(name, kind)
        if role == "event":  # integer codes beyond 0/1: a competing-risk or multi-state event (0 censored)
            kind = "categorical" if kind == "integer" else "binary"
        if role == "time":
            kind = "continuous"
        specs.append(ColumnSpec(name, kind, role, merge_dtypes([d for _, d in sites], kind)))
    return specs
