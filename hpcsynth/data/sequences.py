"""Patients as sequences of visits: the one shape in which longitudinal records travel between the data layer,
the sequence generators and the temporal evaluation.

A longitudinal cohort is two tables that share a key: `context` holds one row per patient (the static columns:
sex, age at entry, treatment arm, outcome) and `visits` one row per visit (the key, the visit's time since the
patient's entry in days, and the per-visit values, NaN where a value was not measured). Keeping the two apart,
rather than repeating the context on every visit, is what lets a generator draw the context once per patient
and lets the evaluation weigh patients, not visits.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


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
