"""The density-ratio (DOMIAS-style) membership attack: against a generator that piles its samples around its
training rows it tells members from held-out rows better than the distance attack; against an independent draw
of the same population it is near chance; its kernel density is the closed form; the suite reports it."""
import numpy as np
import pandas as pd
import pytest

from hpcsynth.comm import SoloComm
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.attacks import membership_auroc
from hpcsynth.evaluate.domias import domias_auroc, granularity, log_density
from hpcsynth.evaluate.suite import EvalSpec, evaluate


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: rng.normal(size=n) for c in "abcd"})


@pytest.fixture(scope="module")
def population():
    train, holdout = _frame(200, 0), _frame(200, 1)
    return train, holdout, TableTransformer().fit(train)


def test_a_locally_overfit_release_is_caught_better_than_by_the_distance_attack(population):
    train, holdout, t = population
    # a memorising generator: 20 samples around every training row, spread like the rows' own spacing, so the
    # release is dense everywhere and a held-out row also finds a close synthetic row
    piles = pd.concat([train] * 20, ignore_index=True)
    piles = piles + np.random.default_rng(3).normal(0, 0.3, piles.shape)
    density, distance = domias_auroc(piles, train, holdout, t), membership_auroc(piles, train, holdout, t)
    assert density > 0.75 and density > distance + 0.02


def test_an_independent_draw_is_near_chance(population):
    train, holdout, t = population
    assert abs(domias_auroc(_frame(2000, 9), train, holdout, t) - 0.5) < 0.07


def test_copied_training_rows_are_recognised(population):
    train, holdout, t = population
    assert domias_auroc(pd.concat([train] * 3, ignore_index=True), train, holdout, t) > 0.9


def test_the_log_density_is_the_gaussian_kernel_sum_and_leaves_a_row_out_when_asked():
    rng = np.random.default_rng(0)
    data, query, h = rng.normal(size=(30, 3)), rng.normal(size=(5, 3)), 0.7
    d2 = ((query[:, None, :] - data[None, :, :]) ** 2).sum(axis=2)
    expected = np.log(np.exp(-d2 / (2 * h * h)).mean(axis=1)) - 3 * np.log(h)
    assert np.allclose(log_density(query, data, h), expected)
    d2 = ((data[:, None, :] - data[None, :, :]) ** 2).sum(axis=2)
    kernel = np.exp(-d2 / (2 * h * h))
    np.fill_diagonal(kernel, 0.0)
    assert np.allclose(log_density(data, data, h, leave_out_self=True), np.log(kernel.sum(axis=1) / 29) - 3 * np.log(h))


def test_the_granularity_is_the_median_nearest_neighbour_distance():
    x = np.array([[0.0], [1.0], [3.0], [7.0]], dtype=np.float32)  # nearest: 1, 1, 2, 4
    assert granularity(x) == pytest.approx(1.5)


def test_the_suite_reports_the_density_attack(mds, noisy_synthetic):
    train, holdout, _, t = mds
    scores = evaluate(noisy_synthetic, train, holdout, t, SoloComm(), EvalSpec(), metrics=["domias_auroc"]).scores
    assert 0.5 < scores["domias_auroc"] <= 1.0  # resampled training rows with jitter: members stand out
