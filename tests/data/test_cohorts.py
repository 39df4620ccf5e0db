"""Named cohorts load from the installed packages with their declared survival columns intact."""
import numpy as np
import pytest

from hpcsynth.config import DataConfig
from hpcsynth.data.cohorts import COHORTS, load_cohort
from hpcsynth.data.sources import load_site

REAL = [name for name, c in COHORTS.items() if not c.simulated]
ROWS = {"flchain": 7874, "whas500": 500, "gbsg2": 686, "actg320": 1151, "actg175": 2139, "lung": 227}


@pytest.mark.parametrize("name", REAL)
def test_real_cohort_has_published_times_binary_events_and_declared_columns(name):
    """Times stay as published (flchain has three of 0); loading makes them positive by the zero-time rule."""
    cohort = COHORTS[name]
    frame = load_cohort(name)
    assert len(frame) == ROWS[name]
    assert (frame[cohort.time] >= 0).all()
    loaded = load_site(DataConfig(builtin=name, holdout=0.0), None, 1, seed=0).train
    assert (loaded[cohort.time] > 0).all()
    assert set(frame[cohort.event].unique()) <= {0, 1} and frame[cohort.event].nunique() == 2
    for column in (*cohort.categorical, *cohort.id_columns):
        assert column in frame.columns


@pytest.mark.parametrize("name", REAL)
def test_any_named_cohort_splits_into_three_sites(name):
    cfg = DataConfig(builtin=name, holdout=0.2)
    parts = [load_site(cfg, k, 3, seed=0) for k in range(3)]
    total = sum(len(p.train) + len(p.holdout) for p in parts)
    assert total == ROWS[name]
    assert all(c not in parts[0].train for c in COHORTS[name].id_columns)
    assert parts[0].time == COHORTS[name].time


def test_lung_keeps_its_institutions_when_the_sites_match():
    cfg = DataConfig(builtin="lung", holdout=0.0)
    sizes = [len(load_site(cfg, k, 18, seed=0).train) for k in range(18)]
    frame = load_cohort("lung")
    assert sorted(sizes) == sorted(frame["inst"].value_counts().tolist())


def test_mds_through_the_registry_is_the_simulator():
    frame = load_cohort("mds", n_patients=300, n_sites=2, seed=4)
    assert len(frame) == 300 and set(frame["site"]) == {0, 1}
    assert np.isfinite(frame["os_months"]).all()


@pytest.mark.parametrize("name", list(COHORTS))
def test_the_columns_a_cohort_declares_for_its_evaluation_are_in_its_table(name):
    cohort = COHORTS[name]
    frame = load_cohort(name, n_patients=200) if cohort.simulated else load_cohort(name)
    declared = (*cohort.genes, *cohort.cox_covariates, *cohort.sensitive, *cohort.quasi_identifiers,
                *([cohort.risk_groups] if cohort.risk_groups else []))
    assert [c for c in declared if c not in frame.columns] == []
    assert not cohort.genes or all(set(frame[g].dropna().unique()) <= {0.0, 1.0} for g in cohort.genes)
