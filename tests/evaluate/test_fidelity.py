"""Fidelity from merged counts equals the pooled statistics (scipy's KS, direct total variation)."""
import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from hpcsynth.comm import SoloComm
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.fidelity import column_scores, ks_counts, ks_from_counts

RNG = np.random.default_rng(0)


@given(st.lists(st.integers(0, 30), min_size=1, max_size=40), st.lists(st.integers(0, 30), min_size=3, max_size=60))
@settings(max_examples=100, deadline=None)
def test_ks_from_site_counts_equals_scipy_on_pooled_rows(synthetic, real):
    """Ties included (small integer values): three sites' counts summed give scipy's exact statistic."""
    syn = np.sort(np.asarray(synthetic, dtype=float))
    sites = np.array_split(np.asarray(real, dtype=float), 3)
    merged = sum(ks_counts(np.sort(part), syn) for part in sites)
    assert np.isclose(ks_from_counts(syn, merged), ks_2samp(syn, np.asarray(real, float), method="asymp").statistic)


def test_identical_tables_score_one_and_shifted_tables_score_lower():
    frame = pd.DataFrame({"x": RNG.normal(size=500), "c": RNG.choice(["a", "b"], 500)})
    transformer = TableTransformer().fit(frame)
    assert set(column_scores(frame, frame, transformer, SoloComm()).values()) == {1.0}
    shifted = frame.assign(x=frame["x"] + 1.0, c="a")
    scores = column_scores(shifted, frame, transformer, SoloComm())
    assert np.isclose(scores["x"], 1 - ks_2samp(shifted["x"], frame["x"]).statistic)
    assert np.isclose(scores["c"], 1 - abs(1 - frame["c"].eq("a").mean()))
