"""Named cohorts: the built-in MDS simulator and real public survival cohorts shipped by well-kept packages.

Nothing is downloaded at run time: scikit-survival and lifelines carry these tables in their wheels. Each entry
declares what a biostatistician would otherwise have to say in the config (survival columns, categories stored
as numbers, id columns, the natural site column) and what the evaluation should look at (genes, Cox covariates,
risk groups, sensitive columns, quasi-identifiers; `hpcsynth.evaluate.suite.EvalSpec.default`). The cohorts and
their sources are listed in docs/datasets.md.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from hpcsynth.data.mds import MDS_GENES

TimeUnit = Literal["days", "months", "years"]


@dataclass(frozen=True)
class Cohort:
    """A named table, its declarations and what its evaluation looks at.

    Parameters
    ----------
    description : str
        One line for `hpcsynth datasets`.
    load : callable
        Returns the table (the simulator takes n_patients, n_sites and seed).
    time, event : str
        The survival time and the 0/1 event column.
    categorical : tuple of str
        Columns that are categories although stored as numbers.
    id_columns : tuple of str
        Identifiers: dropped, never synthesised.
    site_column : str or None
        The natural site of every row, where the study had several centres.
    simulated : bool
        True for hpcsynth's own simulator (sized by the job), False for a fixed public table.
    genes : tuple of str
        The mutation flags the genomic scores compare (empty: binary columns named like gene symbols).
    cox_covariates : tuple of str
        The key covariates of the Cox comparison (empty: the first numeric features).
    risk_groups : str or None
        The column whose levels get their own Kaplan-Meier curves (None: overall curve only).
    sensitive : tuple of str
        The attribute-inference target (empty: the event).
    quasi_identifiers : tuple of str
        What an attacker is assumed to know (empty: age and sex where present).
    time_unit : {"days", "months", "years"} or None
        The unit of the time column, so that survival scores can be read at 1, 3 and 5 years (None: unknown).
    outcome_columns : tuple of str
        Columns recorded only after the outcome (flchain's cause of death): synthesised like the rest, but left
        out of the utility classifiers' features, which would otherwise read the outcome off them.
    """

    description: str
    load: Callable[..., pd.DataFrame]
    time: str
    event: str
    categorical: tuple[str, ...] = ()
    id_columns: tuple[str, ...] = ()
    site_column: str | None = None
    simulated: bool = False
    genes: tuple[str, ...] = ()
    cox_covariates: tuple[str, ...] = ()
    risk_groups: str | None = None
    sensitive: tuple[str, ...] = ()
    quasi_identifiers: tuple[str, ...] = ()
    time_unit: TimeUnit | None = None
    outcome_columns: tuple[str, ...] = ()


def _sksurv(loader: str, time: str, event: str) -> Callable[[], pd.DataFrame]:
    """scikit-survival returns (features, structured outcome); join them into one table with a 0/1 event.

    Times stay as published: flchain's three times of 0 (deaths on the day of sampling) go through the same
    zero-time rule as a user's file (`hpcsynth.data.sources.apply_zero_time`)."""

    def load() -> pd.DataFrame:
        from sksurv import datasets

        features, outcome = getattr(datasets, loader)()
        frame = features.apply(lambda c: c.astype(object).where(c.notna(), None) if c.dtype == "category" else c)
        frame = frame.reset_index(drop=True)
        frame[time] = outcome[time].astype(float)
        frame[event] = outcome[event].astype(int)
        return frame

    return load


def _actg175() -> pd.DataFrame:
    import importlib.resources

    with importlib.resources.files("lifelines.datasets").joinpath("ACTG175.csv").open() as handle:
        return pd.read_csv(handle).rename(columns={"Unnamed: 0": "row"})


def _lung() -> pd.DataFrame:
    from lifelines.datasets import load_lung

    frame = load_lung()
    return frame[frame["inst"].notna()].reset_index(drop=True)


def _mds(n_patients: int = 4427, n_sites: int = 3, seed: int = 0) -> pd.DataFrame:
    from hpcsynth.data.mds import simulate_mds

    return simulate_mds(n_patients=n_patients, n_sites=n_sites, seed=seed)


_ACTG175_CATEGORIES = ("hemo", "homo", "drugs", "oprior", "z30", "zprior", "race", "gender", "str2", "strat",
                       "symptom", "treat", "offtrt", "r", "arms")

COHORTS: dict[str, Cohort] = {
    "mds": Cohort("simulated multi-site myelodysplastic-syndromes cohort (hpcsynth.data.mds)", _mds,
                  "os_months", "os_event", ("sex", "cyto_risk", "ipssr_category"), ("patient_id",), "site",
                  simulated=True, genes=MDS_GENES,
                  cox_covariates=("age", "ipssr_score", "SF3B1", "TP53", "ASXL1", "RUNX1"),
                  risk_groups="ipssr_category", sensitive=("TP53",), time_unit="months"),
    "flchain": Cohort("serum free light chain and mortality, Olmsted County (scikit-survival)",
                      _sksurv("load_flchain", "futime", "death"), "futime", "death",
                      ("chapter", "flc.grp", "mgus", "sample.yr", "sex"), time_unit="days",
                      outcome_columns=("chapter",)),
    "whas500": Cohort("Worcester Heart Attack Study, 500 patients (scikit-survival)",
                      _sksurv("load_whas500", "lenfol", "fstat"), "lenfol", "fstat", time_unit="days"),
    "gbsg2": Cohort("German Breast Cancer Study Group 2 (scikit-survival)",
                    _sksurv("load_gbsg2", "time", "cens"), "time", "cens", time_unit="days"),
    "actg320": Cohort("AIDS Clinical Trials Group 320, time to AIDS or death (scikit-survival)",
                      _sksurv("load_aids", "time", "censor"), "time", "censor", time_unit="days"),
    "actg175": Cohort("AIDS Clinical Trials Group 175, time to event (lifelines)", _actg175, "days", "cens",
                      _ACTG175_CATEGORIES, ("row", "pidnum"), time_unit="days",
                      cox_covariates=("age", "karnof", "cd40", "cd80", "symptom", "treat")),
    "lung": Cohort("NCCTG advanced lung cancer, 18 institutions (lifelines)", _lung, "time", "status",
                   ("sex", "ph.ecog"), (), "inst", time_unit="days"),
}


def load_cohort(name: str, n_patients: int = 4427, n_sites: int = 3, seed: int = 0) -> pd.DataFrame:
    """The named table (the simulator takes its size, site count and seed; real cohorts are fixed)."""
    cohort = COHORTS[name]
    if cohort.simulated:
        return cohort.load(n_patients=n_patients, n_sites=n_sites, seed=seed)
    return cohort.load()
