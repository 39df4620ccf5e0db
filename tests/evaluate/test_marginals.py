"""Marginal counts summed over sites equal numpy's histogram and value counts on the pooled rows."""
import numpy as np
import pandas as pd

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.marginals import marginals


def test_site_counts_sum_to_pooled_histograms(sites):
    rng = np.random.default_rng(0)
    real = pd.DataFrame({"x": rng.normal(size=300), "c": rng.choice(["a", "b"], 300)})
    transformer = TableTransformer(categorical=["c"]).fit(real)
    parts = np.array_split(np.arange(300), 3)
    got = sites(lambda comm, k: marginals(real.iloc[:10], real.iloc[parts[k]], transformer, comm), 3)[0]
    x = got[0]
    assert np.array_equal(x.real, np.histogram(real["x"], bins=x.edges)[0])
    assert got[1].real.tolist() == [float((real["c"] == "a").sum()), float((real["c"] == "b").sum()), 0.0]
