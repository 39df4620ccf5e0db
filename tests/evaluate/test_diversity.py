"""Alpha-precision, beta-recall and authenticity against a direct scikit-learn transcription of SynthCity's
formulas; closed-form cases; rare-category coverage from counts."""
import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import NearestNeighbors

from hpcsynth.comm import SoloComm
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.diversity import alpha_beta_authenticity, category_coverage


def _reference(X, Y, n=30):
    """SynthCity's AlphaPrecision (raw features), with its corrected authenticity rule."""
    alphas = np.linspace(0, 1, n)
    centre, syn_centre = X.mean(0), Y.mean(0)
    radii = np.quantile(np.linalg.norm(X - centre, axis=1), alphas)
    syn_to_centre = np.linalg.norm(Y - centre, axis=1)
    real_nn = NearestNeighbors(n_neighbors=2).fit(X)
    real_to_real = real_nn.kneighbors(X)[0][:, 1]
    real_to_syn, args = NearestNeighbors(n_neighbors=1).fit(Y).kneighbors(X)
    real_to_syn, args = real_to_syn[:, 0], args[:, 0]
    closest = np.linalg.norm(Y[args] - syn_centre, axis=1)
    closest_radii = np.quantile(closest, alphas)
    precision = [np.mean(syn_to_centre <= r) for r in radii]
    recall = [np.mean((real_to_syn <= real_to_real) & (closest <= r)) for r in closest_radii]
    syn_to_real, syn_args = real_nn.kneighbors(Y, n_neighbors=1)
    authentic = real_to_real[syn_args[:, 0]] < syn_to_real[:, 0]
    return {"alpha_precision": 1 - np.abs(alphas - precision).sum() / alphas.sum(),
            "beta_recall": 1 - np.abs(alphas - recall).sum() / alphas.sum(), "authenticity": authentic.mean()}


def test_equals_reference_implementation():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    Y = (rng.normal(size=(250, 4)) * 0.7 + 0.3).astype(np.float32)
    ours = alpha_beta_authenticity(X, Y)
    expected = _reference(X.astype(np.float64), Y.astype(np.float64))
    assert ours == pytest.approx(expected, abs=1e-6)


def test_copies_are_not_authentic_and_collapse_loses_recall():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3)).astype(np.float32)
    assert alpha_beta_authenticity(X, X.copy())["authenticity"] == 0.0
    jitter = rng.normal(size=(400, 3)).astype(np.float32) * 1e-3
    collapsed = np.repeat(X[:5] * 0.01, 80, axis=0).astype(np.float32) + jitter
    spread = rng.normal(size=(400, 3)).astype(np.float32)
    recall = {name: alpha_beta_authenticity(X, rows)["beta_recall"] for name, rows in (("collapsed", collapsed),
                                                                                         ("spread", spread))}
    assert recall["collapsed"] < 0.2 < recall["spread"]


def test_rare_category_coverage_counts_levels_seen():
    real = pd.DataFrame({"c": ["a"] * 96 + ["b"] * 3 + ["c"] * 1})
    transformer = TableTransformer(categorical=["c"]).fit(real)
    got = category_coverage(pd.DataFrame({"c": ["a"] * 50 + ["b"]}), real, transformer, SoloComm())
    assert got == {"category_coverage": 2 / 3, "rare_category_coverage": 0.5}
