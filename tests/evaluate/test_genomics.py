"""Mutation frequencies and log odds ratios against closed forms and scipy; site counts sum to the pooled ones."""
import numpy as np
import pandas as pd
import pytest
from scipy.stats.contingency import odds_ratio

from hpcsynth.comm import SoloComm
from hpcsynth.evaluate.genomics import compare_genomics, log_odds_ratio, mutation_counts


def _genes(n, seed, exclusive):
    rng = np.random.default_rng(seed)
    a = rng.random(n) < 0.3
    b = (rng.random(n) < 0.3) & ~a if exclusive else (rng.random(n) < np.where(a, 0.6, 0.1))
    c = rng.random(n) < 0.1
    frame = pd.DataFrame({"A": a.astype(float), "B": b.astype(float), "C": c.astype(float)})
    frame.loc[rng.random(n) < 0.1, "C"] = np.nan  # not on every panel
    return frame


def test_log_odds_ratio_is_haldane_corrected_sample_odds_ratio():
    assert log_odds_ratio(np.array([[10, 5, 3, 40]], float))[0] == pytest.approx(np.log(10.5 * 40.5 / (5.5 * 3.5)))
    assert log_odds_ratio(np.array([[0, 7, 9, 30]], float))[0] == pytest.approx(np.log(0.5 * 30.5 / (7.5 * 9.5)))
    big = np.array([[400, 200, 100, 800]])  # large cells: the correction vanishes, scipy's sample odds ratio
    reference = np.log(odds_ratio(big.reshape(2, 2), kind="sample").statistic)
    assert log_odds_ratio(big.astype(float))[0] == pytest.approx(reference, abs=1e-2)


def test_frequencies_over_tested_patients_and_signs_of_association():
    real, synthetic = _genes(2000, 0, exclusive=False), _genes(2000, 1, exclusive=True)
    g = compare_genomics(synthetic, real, ["A", "B", "C"], SoloComm())
    assert g.real_freq[2] == pytest.approx(real["C"].mean())  # pandas' mean skips the untested
    assert g.real_log_or[0] > 0 and g.synthetic_log_or[0] < 0  # co-occurring in real, exclusive in synthetic
    scores = g.scores()
    assert scores["co_mutation_agreement"] == 0.0  # the only significant real pair flips sign
    same = compare_genomics(real, real, ["A", "B", "C"], SoloComm()).scores()
    assert same["gene_frequency_similarity"] == 1.0 and same["co_mutation_agreement"] == 1.0


def test_site_counts_sum_to_pooled_counts(sites):
    real, synthetic = _genes(900, 2, False), _genes(300, 3, False)
    pooled = compare_genomics(synthetic, real, ["A", "B", "C"], SoloComm())
    parts = np.array_split(np.arange(len(real)), 3)
    for got in sites(lambda comm, k: compare_genomics(synthetic, real.iloc[parts[k]], ["A", "B", "C"], comm), 3):
        assert np.array_equal(got.real_log_or, pooled.real_log_or) and np.array_equal(got.real_freq, pooled.real_freq)
    assert mutation_counts(real, ["A", "B"])[:2].sum() == 2 * len(real)
