"""Tests of the built-in MDS cohort simulator against the IPSS-R table and the published cohort figures.

Published figures are written out here, not imported from the module, so that a wrong constant in the module
fails a test: IPSS-R (Greenberg et al., Blood 2012), cytogenetic shares (Schanz et al., JCO 2012), driver
mutation frequencies (Papaemmanuil et al., Blood 2013; Haferlach et al., Leukemia 2014; Bernard et al.,
NEJM Evidence 2022).
"""
import re

import numpy as np
import pandas as pd
import pytest

from hpcsynth.data.mds import (
    MDS_METADATA,
    export_mds_csv,
    ipssr_category,
    ipssr_score,
    simulate_mds,
)

GENES = [
    "SF3B1", "TET2", "ASXL1", "SRSF2", "DNMT3A", "RUNX1", "U2AF1", "TP53", "STAG2", "EZH2",
    "ZRSR2", "CBL", "BCOR", "NRAS", "IDH2", "IDH1", "ETV6", "SETBP1", "JAK2", "KRAS",
]
COLUMNS = [
    "patient_id", "site", "age", "sex", "hb", "plt", "anc", "bm_blasts", "cyto_risk", "ipssr_score",
    "ipssr_category", *GENES, "os_months", "os_event", "aml_progression",
]
CATEGORIES = ["very_low", "low", "intermediate", "high", "very_high"]
PUBLISHED_CATEGORY_SHARES = [0.19, 0.38, 0.20, 0.13, 0.10]
PUBLISHED_MEDIAN_OS_YEARS = [8.8, 5.3, 3.0, 1.6, 0.8]
PUBLISHED_CYTO_SHARES = {"very_good": 0.04, "good": 0.72, "intermediate": 0.13, "poor": 0.04, "very_poor": 0.07}
# Published ranges (the "about x%" genes get x +- a third of x, at least 0.8 points).
PUBLISHED_FREQUENCY_RANGES = {
    "SF3B1": (0.20, 0.28), "TET2": (0.20, 0.25), "ASXL1": (0.15, 0.20), "SRSF2": (0.12, 0.15),
    "DNMT3A": (0.10, 0.13), "RUNX1": (0.08, 0.12), "TP53": (0.07, 0.10),
    **{g: (0.07 - 0.02, 0.07 + 0.02) for g in ["U2AF1"]},
    **{g: (0.06 - 0.02, 0.06 + 0.02) for g in ["STAG2"]},
    **{g: (0.05 - 0.017, 0.05 + 0.017) for g in ["EZH2", "ZRSR2"]},
    **{g: (0.04 - 0.013, 0.04 + 0.013) for g in ["CBL", "BCOR", "NRAS"]},
    **{g: (0.03 - 0.01, 0.03 + 0.01) for g in ["IDH2"]},
    **{g: (0.02 - 0.008, 0.02 + 0.008) for g in ["IDH1", "ETV6", "SETBP1", "JAK2", "KRAS"]},
}


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    """The default cohort: 4,427 patients over 3 sites."""
    return simulate_mds()


@pytest.fixture(scope="module")
def large() -> pd.DataFrame:
    """A large draw for statistics that need small sampling error."""
    return simulate_mds(n_patients=60_000, seed=11)


def km_median(time: np.ndarray, event: np.ndarray) -> float:
    """Kaplan-Meier median: the first time the product-limit survival reaches 1/2 (inf if it never does)."""
    order = np.argsort(time, kind="stable")
    time, event = np.asarray(time)[order], np.asarray(event)[order]
    times, first = np.unique(time, return_index=True)
    deaths = np.add.reduceat(event, first)
    at_risk = len(time) - first
    survival = np.cumprod(1.0 - deaths / at_risk)
    reached = np.flatnonzero(survival <= 0.5)
    return float(times[reached[0]]) if reached.size else np.inf


def log_odds_ratio(a: pd.Series, b: pd.Series) -> float:
    """Log odds ratio of co-mutation over rows where both genes were tested (0.5 added to every cell)."""
    both = a.notna() & b.notna()
    a, b = a[both].astype(bool), b[both].astype(bool)
    n11, n10, n01, n00 = ((a & b).sum(), (a & ~b).sum(), (~a & b).sum(), (~a & ~b).sum())
    return float(np.log((n11 + 0.5) * (n00 + 0.5) / ((n10 + 0.5) * (n01 + 0.5))))


# --- reproducibility, sizes, columns -------------------------------------------------------------------------

def test_same_seed_gives_identical_frame_and_another_seed_differs():
    first, again, other = simulate_mds(500, seed=3), simulate_mds(500, seed=3), simulate_mds(500, seed=4)
    pd.testing.assert_frame_equal(first, again)
    assert not first.drop(columns="patient_id").equals(other.drop(columns="patient_id"))


def test_default_cohort_has_4427_patients_split_largest_at_the_referral_site(cohort):
    sizes = cohort["site"].value_counts().sort_index()
    assert list(sizes.index) == [0, 1, 2]
    assert sizes.sum() == 4427
    assert sizes.is_monotonic_decreasing
    np.testing.assert_allclose(sizes / 4427, [0.45, 0.32, 0.23], atol=0.015)


@pytest.mark.parametrize("n_patients, n_sites", [(7, 7), (10, 1), (101, 5)])
def test_every_site_gets_a_patient_and_the_total_is_exact(n_patients, n_sites):
    frame = simulate_mds(n_patients, n_sites, seed=1)
    assert len(frame) == n_patients
    assert sorted(frame["site"].unique()) == list(range(n_sites))


@pytest.mark.parametrize("n_patients, n_sites", [(2, 3), (0, 1), (5, 0)])
def test_too_few_patients_or_sites_is_a_clear_error(n_patients, n_sites):
    with pytest.raises(ValueError, match="n_sites"):
        simulate_mds(n_patients, n_sites)


def test_columns_dtypes_and_value_domains(cohort):
    assert list(cohort.columns) == COLUMNS
    assert cohort["patient_id"].is_unique
    assert cohort["patient_id"].map(lambda s: bool(re.fullmatch(r"S\d+-\d{6}", s))).all()
    assert (cohort["patient_id"].str.extract(r"S(\d+)-")[0].astype(int) == cohort["site"]).all()
    for column in ("site", "os_event", "aml_progression"):
        assert pd.api.types.is_integer_dtype(cohort[column]), column
        assert cohort[column].notna().all()
    assert set(cohort["os_event"]) <= {0, 1} and set(cohort["aml_progression"]) <= {0, 1}
    for column in ("age", "hb", "plt", "anc", "bm_blasts", "ipssr_score", "os_months", *GENES):
        assert pd.api.types.is_float_dtype(cohort[column]), column
    for gene in GENES:
        assert set(cohort[gene].dropna().unique()) <= {0.0, 1.0}, gene
    assert set(cohort["sex"]) == {"M", "F"}
    assert set(cohort["cyto_risk"].dropna()) == set(PUBLISHED_CYTO_SHARES)
    assert set(cohort["ipssr_category"].dropna()) == set(CATEGORIES)
    assert (cohort["os_months"] > 0).all()
    assert (cohort["age"] * 10 == (cohort["age"] * 10).round()).all()
    assert cohort["bm_blasts"].between(0, 20, inclusive="left").all()


def test_metadata_names_the_frame_columns(cohort):
    assert MDS_METADATA["site_column"] == "site" and MDS_METADATA["id_columns"] == ["patient_id"]
    assert MDS_METADATA["time"] == "os_months" and MDS_METADATA["event"] == "os_event"
    text_columns = [c for c in cohort.columns if not pd.api.types.is_numeric_dtype(cohort[c])]
    assert sorted(MDS_METADATA["categorical"]) == sorted(set(text_columns) - {"patient_id"})


def test_export_writes_the_same_frame_as_csv(tmp_path):
    path = tmp_path / "mds.csv"
    export_mds_csv(path, n_patients=50, n_sites=2, seed=5)
    expected = simulate_mds(50, 2, seed=5)
    read = pd.read_csv(path)
    assert list(read.columns) == list(expected.columns)
    np.testing.assert_allclose(read["os_months"], expected["os_months"])
    assert read["patient_id"].tolist() == expected["patient_id"].tolist()


# --- IPSS-R table -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "cyto, blasts, hb, plt, anc, score, category",
    [
        ("very_good", 2.0, 10.0, 100.0, 0.8, 0.0, "very_low"),  # every value exactly on its best-side boundary
        ("good", 2.1, 9.9, 99.0, 0.79, 4.0, "intermediate"),  # just past each boundary: 1 + 1 + 1 + 0.5 + 0.5
        ("intermediate", 5.0, 8.0, 50.0, 0.8, 5.5, "high"),  # 2 + 2 + 1 + 0.5 + 0
        ("poor", 10.0, 7.9, 49.0, 0.5, 8.0, "very_high"),  # 3 + 2 + 1.5 + 1 + 0.5
        ("very_poor", 10.1, 12.0, 300.0, 3.0, 7.0, "very_high"),  # 4 + 3
        ("good", 4.9, 10.0, 100.0, 0.8, 2.0, "low"),  # 1 + 1
        ("good", 0.0, 10.0, 50.0, 0.8, 1.5, "very_low"),  # category boundary 1.5
        ("good", 5.0, 10.0, 100.0, 0.8, 3.0, "low"),  # category boundary 3
        ("good", 5.0, 8.0, 100.0, 0.7, 4.5, "intermediate"),  # category boundary 4.5
        ("poor", 5.0, 9.0, 100.0, 0.8, 6.0, "high"),  # category boundary 6
        ("poor", 5.0, 9.0, 50.0, 0.8, 6.5, "very_high"),
        ("very_good", 0.0, 8.0, 100.0, 0.8, 1.0, "very_low"),
        ("intermediate", 2.0, 10.0, 100.0, 0.7, 2.5, "low"),
    ],
)
def test_ipssr_score_and_category_match_hand_computed_rows(cyto, blasts, hb, plt, anc, score, category):
    got = ipssr_score([cyto], [blasts], [hb], [plt], [anc])
    assert got.tolist() == [score]
    assert ipssr_category(got).tolist() == [category]


def test_ipssr_category_upper_bounds_are_inclusive():
    scores = [0.0, 1.5, 1.51, 3.0, 3.01, 4.5, 4.51, 6.0, 6.01, 10.0]
    assert ipssr_category(scores).tolist() == [
        "very_low", "very_low", "low", "low", "intermediate", "intermediate", "high", "high", "very_high",
        "very_high",
    ]


def test_ipssr_missing_inputs_give_missing_outputs_and_series_work():
    cyto = pd.Series(["good", None, np.nan, "poor"], index=[10, 11, 12, 13])
    hb = pd.Series([11.0, 11.0, 11.0, np.nan], index=[10, 11, 12, 13])
    score = ipssr_score(cyto, [1.0] * 4, hb, [200.0] * 4, [2.0] * 4)
    assert score[0] == 1.0 and np.isnan(score[1:]).all()
    assert ipssr_category(score).tolist() == ["very_low", None, None, None]


def test_ipssr_unknown_cytogenetic_label_is_an_error():
    with pytest.raises(ValueError, match="complex"):
        ipssr_score(["complex"], [1.0], [11.0], [200.0], [2.0])


def test_frame_ipssr_columns_are_computed_from_the_frame_and_missing_with_the_karyotype(cohort):
    recomputed = ipssr_score(cohort["cyto_risk"], cohort["bm_blasts"], cohort["hb"], cohort["plt"], cohort["anc"])
    np.testing.assert_array_equal(recomputed, cohort["ipssr_score"].to_numpy())
    assert cohort.loc[cohort["cyto_risk"].isna(), "ipssr_score"].isna().all()
    assert (cohort["ipssr_score"].isna() == cohort["ipssr_category"].isna()).all()


# --- published shares and frequencies ------------------------------------------------------------------------

def test_risk_category_and_cytogenetic_shares_are_as_published(large):
    categories = large["ipssr_category"].value_counts(normalize=True).reindex(CATEGORIES)
    np.testing.assert_allclose(categories, PUBLISHED_CATEGORY_SHARES, atol=0.025)
    cyto = large["cyto_risk"].value_counts(normalize=True).reindex(list(PUBLISHED_CYTO_SHARES))
    np.testing.assert_allclose(cyto, list(PUBLISHED_CYTO_SHARES.values()), atol=0.012)


def test_demographics_are_those_of_mds(large):
    assert 70.0 <= large["age"].median() <= 75.0
    assert 0.57 <= (large["sex"] == "M").mean() <= 0.63


@pytest.mark.parametrize("gene", GENES)
def test_pooled_mutation_frequency_over_tested_rows_is_in_the_published_range(large, gene):
    low, high = PUBLISHED_FREQUENCY_RANGES[gene]
    assert low <= large[gene].mean() <= high  # mean() skips the untested (NaN) rows


def test_splicing_genes_are_mutually_exclusive(large):
    splicing = large[["SF3B1", "SRSF2", "U2AF1", "ZRSR2"]].fillna(0.0)
    assert (splicing.sum(axis=1) <= 1).all()
    assert (splicing.sum(axis=0) > 100).all()  # each one does occur


@pytest.mark.parametrize(
    "a, b",
    [("SRSF2", "TET2"), ("SRSF2", "ASXL1"), ("SRSF2", "RUNX1"), ("SRSF2", "IDH2"), ("SRSF2", "STAG2"),
     ("SF3B1", "DNMT3A"), ("ASXL1", "RUNX1"), ("ASXL1", "EZH2"), ("ASXL1", "STAG2")],
)
def test_published_co_mutations_have_positive_log_odds_ratio(large, a, b):
    assert log_odds_ratio(large[a], large[b]) > 0.4


def test_srsf2_tet2_co_mutation_already_shows_in_the_default_cohort(cohort):
    assert log_odds_ratio(cohort["SRSF2"], cohort["TET2"]) > 0.4


def test_tp53_is_enriched_in_very_poor_cytogenetics(large):
    very_poor = large["cyto_risk"] == "very_poor"
    others = large["cyto_risk"].notna() & ~very_poor
    assert large.loc[very_poor, "TP53"].mean() > 0.35
    assert large.loc[very_poor, "TP53"].mean() > 5 * large.loc[others, "TP53"].mean()


def test_sf3b1_goes_with_low_blasts(large):
    sf3b1 = large["SF3B1"] == 1.0
    assert large.loc[sf3b1, "bm_blasts"].median() < 0.5 * large.loc[~sf3b1, "bm_blasts"].median()
    assert large.loc[sf3b1, "bm_blasts"].quantile(0.9) < 10.0


# --- outcomes ------------------------------------------------------------------------------------------------

def test_median_survival_falls_across_ipssr_groups_near_the_published_medians(large):
    groups = [large[large["ipssr_category"] == c] for c in CATEGORIES]
    medians = [km_median(g["os_months"].to_numpy(), g["os_event"].to_numpy()) / 12.0 for g in groups]
    assert all(a > b for a, b in zip(medians, medians[1:])), medians
    np.testing.assert_allclose(medians, PUBLISHED_MEDIAN_OS_YEARS, rtol=0.15)


def test_tp53_mutated_patients_live_shorter(large):
    tested = large[large["TP53"].notna()]
    mutated = tested[tested["TP53"] == 1.0]
    wild = tested[tested["TP53"] == 0.0]
    assert km_median(mutated["os_months"].to_numpy(), mutated["os_event"].to_numpy()) < 0.5 * km_median(
        wild["os_months"].to_numpy(), wild["os_event"].to_numpy()
    )


def test_sf3b1_mutated_patients_live_longer_within_the_low_risk_group(large):
    low = large[large["ipssr_category"] == "low"]
    mutated, wild = low[low["SF3B1"] == 1.0], low[low["SF3B1"] == 0.0]
    assert km_median(mutated["os_months"].to_numpy(), mutated["os_event"].to_numpy()) > km_median(
        wild["os_months"].to_numpy(), wild["os_event"].to_numpy()
    )


def test_censoring_and_aml_progression_rates(large):
    assert 0.30 <= 1.0 - large["os_event"].mean() <= 0.45
    assert 0.25 <= large["aml_progression"].mean() <= 0.35
    by_group = large.groupby("ipssr_category")["aml_progression"].mean().reindex(CATEGORIES)
    assert by_group.is_monotonic_increasing


# --- sites ---------------------------------------------------------------------------------------------------

def test_referral_site_is_younger_and_higher_risk_than_the_community_site(cohort):
    first, last = cohort[cohort["site"] == 0], cohort[cohort["site"] == 2]
    assert first["age"].mean() < last["age"].mean() - 5.0
    higher = ["high", "very_high"]
    assert first["ipssr_category"].isin(higher).mean() > last["ipssr_category"].isin(higher).mean() + 0.05


def test_gene_panels_shrink_from_referral_to_community_site_and_are_blank_for_the_whole_site(cohort):
    tested = {}
    for site, rows in cohort.groupby("site"):
        missing = rows[GENES].isna().mean()
        assert set(missing.unique()) <= {0.0, 1.0}, f"site {site} has partly tested genes"
        tested[site] = set(missing.index[missing == 0.0])
    assert len(tested[0]) == 20 and len(tested[1]) == 14 and len(tested[2]) == 8
    assert tested[2] < tested[1] < tested[0]


def test_registry_missingness_in_blood_counts_and_karyotypes(large):
    for column in ("hb", "plt", "anc"):
        assert 0.01 <= large[column].isna().mean() <= 0.03, column
    assert 0.03 <= large["cyto_risk"].isna().mean() <= 0.05
    assert large[["age", "sex", "bm_blasts", "os_months"]].notna().all().all()


def test_more_sites_interpolate_between_referral_and_community_profiles():
    frame = simulate_mds(5_000, n_sites=5, seed=2)
    by_site = frame.groupby("site")
    assert by_site["age"].mean().is_monotonic_increasing
    assert by_site.size().is_monotonic_decreasing
    panel = by_site[GENES].apply(lambda rows: int(rows.notna().all().sum()))
    assert panel.iloc[0] == 20 and panel.iloc[-1] == 8 and panel.is_monotonic_decreasing
