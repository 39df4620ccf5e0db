"""Pair trends from summed statistics equal SDMetrics' Quality Report on the same data, also split over sites."""
import numpy as np
import pandas as pd
import pytest

from hpcsynth.comm import SoloComm
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.fidelity import column_scores
from hpcsynth.evaluate.pairs import pair_trends


def _table(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    frame = pd.DataFrame({"x": x, "y": 0.6 * x + rng.normal(size=n), "n": rng.integers(0, 50, n).astype(float),
                          "c": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1]),
                          "g": (rng.random(n) < 0.3 + 0.2 * (x > 0)).astype(float)})
    frame.loc[rng.random(n) < 0.1, "g"] = np.nan
    frame.loc[rng.random(n) < 0.05, "y"] = np.nan
    return frame


METADATA = {"columns": {"x": {"sdtype": "numerical"}, "y": {"sdtype": "numerical"}, "n": {"sdtype": "numerical"},
                        "c": {"sdtype": "categorical"}, "g": {"sdtype": "categorical"}}}


@pytest.mark.filterwarnings("ignore:The single table quality report is deprecated:FutureWarning")
@pytest.mark.parametrize("thresholds", [(0.0, 0.0), (0.5, 0.3), (0.5, 0.15)])
def test_pair_trends_equal_sdmetrics_quality_report(thresholds):
    """Thresholds 0: the classic report (every pair); (0.5, 0.3): SDMetrics 0.32's default."""
    sdmetrics = pytest.importorskip("sdmetrics.reports.single_table")
    real, synthetic = _table(0, 400), _table(1, 300).assign(y=lambda f: f["y"] * 0.5)
    transformer = TableTransformer(categorical=["c"]).fit(real)
    report = sdmetrics.QualityReport()
    report.real_correlation_threshold, report.real_association_threshold = thresholds
    report.generate(real, synthetic, METADATA, verbose=False)
    details = report.get_details("Column Pair Trends")
    ours = pair_trends(synthetic, real, transformer, SoloComm(), *thresholds)
    for _, row in details.iterrows():
        pair = (row["Column 1"], row["Column 2"])
        assert ours.counted[pair] == bool(row["Meets Threshold?"])
        if ours.counted[pair]:
            assert ours.scores[pair] == pytest.approx(row["Score"], abs=1e-9)
    properties = report.get_properties().set_index("Property")["Score"]
    assert ours.score == pytest.approx(properties["Column Pair Trends"], abs=1e-9)
    shapes = column_scores(synthetic, real, transformer, SoloComm())
    for _, row in report.get_details("Column Shapes").iterrows():
        if not real[row["Column"]].isna().any():  # hpcsynth counts a missing category as a level; SDMetrics
            assert shapes[row["Column"]] == pytest.approx(row["Score"], abs=1e-9)  # drops it (KS: both drop)


def test_pair_trends_from_three_sites_equal_the_pooled_figures(sites):
    real, synthetic = _table(2, 600), _table(3, 300)
    transformer = TableTransformer(categorical=["c"]).fit(real)
    pooled = pair_trends(synthetic, real, transformer, SoloComm())
    parts = np.array_split(np.arange(len(real)), 3)
    split = sites(lambda comm, k: pair_trends(synthetic, real.iloc[parts[k]], transformer, comm), 3)
    for result in split:
        assert result.scores == pytest.approx(pooled.scores, abs=1e-12)
        assert np.allclose(result.real_corr, pooled.real_corr, atol=1e-12)
