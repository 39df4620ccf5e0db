"""The job file's `data:` section (where a job's rows come from, how they split into sites) and the column
declarations that the config or a named cohort makes. It lives in the data layer because the loaders read it;
`hpcsynth.config` parses and validates it with the rest of the job file.
"""
from __future__ import annotations

from dataclasses import dataclass, field

TIME_UNITS = ("days", "months", "years")  # data.time_unit: what the survival time column counts


@dataclass
class PartitionConfig:
    """How one table is split into simulated sites (see hpcsynth.data.partition)."""

    kind: str = "iid"
    column: str | None = None
    alpha: float = 0.5
    n_sites: int | None = None


@dataclass
class SequenceConfig:
    """`data.sequence`: the rows are visits of patients (hpcsynth.data.sequences).

    Parameters
    ----------
    key : str
        The patient identifier column.
    index : str
        The visit time column: a number of days, or datetimes; it becomes days since the patient's first visit.
    ends : dict of str to list
        {visit column: its levels that end a patient's follow-up}: absorbing states (progression, death), so a
        visit at one of them is the patient's last. The data must honour it; the generator does by construction.
    """

    key: str | None = None
    index: str | None = None
    ends: dict[str, list[float | str]] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Where the rows come from and how they split into sites.

    Exactly one of `builtin`, `path` (one table, split by `site_column`) or `sites` (one file per site,
    site k read by rank k) is given.
    """

    builtin: str | None = None
    path: str | None = None
    sites: list[str] | None = None
    site_column: str | None = None
    n_sites: int | None = None
    n_patients: int = 4427
    holdout: float = 0.2
    # a share of the training rows judged in place of the held-out rows, which the job then never reads: a
    # tuning study's trials are scored on it, so the rows that check the tuned model are unseen by its search
    validation: float = 0.0
    partition: PartitionConfig | None = None
    id: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    time: str | None = None
    event: str | None = None
    # the unit of the time column (one of TIME_UNITS): the evaluation's time-dependent AUROC is then taken at 1, 3
    # and 5 years; None takes a named cohort's own unit, else the event times' quartiles
    time_unit: str | None = None
    target: str | None = None
    # public facts about columns, not learnt from the rows: a numeric column's range [low, high] (values are
    # clipped into it), a categorical column's levels; with a privacy budget they spend nothing
    bounds: dict[str, list[float]] = field(default_factory=dict)
    levels: dict[str, list[float | str]] = field(default_factory=dict)
    # the survival time given to a time of 0, in the time column's units (0.5: half a day for times in days)
    zero_time: float = 0.5
    # longitudinal rows: the patient key and visit time, and the static per-patient columns (a named
    # longitudinal cohort declares its own)
    sequence: SequenceConfig | None = None
    context: list[str] = field(default_factory=list)


@dataclass
class Declarations:
    """What the config (or a named cohort) says about the columns, and how many rows the zero-time rule
    changed when this site's rows were loaded (`hpcsynth.data.sources.apply_zero_time`)."""

    categorical: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    time: str | None = None
    event: str | None = None
    time_unit: str | None = None
    target: str | None = None
    id_columns: list[str] = field(default_factory=list)
    site_column: str | None = None
    bounds: dict[str, list[float]] = field(default_factory=dict)
    levels: dict[str, list] = field(default_factory=dict)
    zero_time: float = 0.5
    zero_time_rows: int = 0
    visit_event: str | None = None  # longitudinal data: a 0/1 visit column whose first 1 is an event onset
    ends: dict[str, list] = field(default_factory=dict)  # longitudinal data: visit levels that end follow-up
