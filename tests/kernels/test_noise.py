"""DP noise: the counter-based stream is standard normal (mean, variance, Kolmogorov-Smirnov, Anderson-Darling,
tails), independent across elements, Box-Muller partners, steps and ranks, a pure function of
(seed, rank, step, index); clip-by-global-norm plus noise equals a float64 numpy reference bit for bit."""
import math

import numpy as np
import pytest
from scipy import stats

from hpcsynth.kernels import clip_and_noise, gaussian_noise
from hpcsynth.kernels.noise import clip_scale

N = 1_000_000
FIVE_SIGMA = 5 / math.sqrt(N)


def draw(n=N, seed=2024, rank=0, step=0, std=1.0):
    return gaussian_noise(np.empty(n, np.float32), std, seed, rank, step).astype(np.float64)


@pytest.fixture(scope="module")
def z():
    return draw()


def test_mean_and_variance_are_zero_and_one(z):
    assert abs(z.mean()) < FIVE_SIGMA
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2.0 / N)


def test_a_million_draws_pass_kolmogorov_smirnov_and_anderson_darling(z):
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert stats.anderson(z, dist="norm", method="interpolate").pvalue > 1e-3


def test_tail_frequencies_match_the_normal(z):
    for k in (2.0, 3.0, 4.0):
        p = 2 * stats.norm.sf(k)
        assert abs(np.mean(np.abs(z) > k) - p) < 5 * math.sqrt(p * (1 - p) / N)


def test_draws_are_uncorrelated_across_elements_partners_steps_and_ranks(z):
    pairs = {
        "neighbours": (z[:-1], z[1:]),
        "box-muller partners, squared": (z[0::2] ** 2, z[1::2] ** 2),
        "next step": (z, draw(step=1)),
        "next rank": (z, draw(rank=1)),
        "next seed": (z, draw(seed=2025)),
    }
    for name, (a, b) in pairs.items():
        assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(len(a)), name


def test_noise_depends_only_on_seed_rank_step_and_index():
    long = draw(1001, seed=5, rank=3, step=77)
    assert np.array_equal(draw(13, seed=5, rank=3, step=77), long[:13])
    assert np.array_equal(draw(1001, seed=5, rank=3, step=77), long)
    assert not np.array_equal(draw(1001, seed=5, rank=3, step=78), long)
    assert np.array_equal(draw(1001, seed=5, rank=3, step=77, std=2.0), 2.0 * long)


def test_clip_and_noise_equals_a_float64_reference_bit_for_bit():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(10_001).astype(np.float32)
    buffer = x.copy()
    norm = clip_and_noise(buffer, 3.0, 0.7, 9, 1, 4)
    exact = np.linalg.norm(x.astype(np.float64))
    assert norm == pytest.approx(exact, rel=1e-12)
    scale = clip_scale(norm**2, 3.0)
    assert float(scale) * norm <= 3.0 < float(np.nextafter(scale, np.float32(1))) * norm
    z = gaussian_noise(np.empty_like(x), 1.0, 9, 1, 4)
    expected = (x.astype(np.float64) * float(scale) + float(np.float32(0.7)) * z.astype(np.float64))
    assert np.array_equal(buffer, expected.astype(np.float32))


def test_clipping_without_noise_bounds_the_norm_and_keeps_small_buffers():
    big = np.full(1000, 1.0, np.float32)
    clip_and_noise(big, 2.0, 0.0, 0, 0, 0)
    assert np.linalg.norm(big.astype(np.float64)) == pytest.approx(2.0, rel=1e-6)
    small = np.array([0.3, 0.4], np.float32)
    assert clip_and_noise(small, 1.0, 0.0, 0, 0, 0) == pytest.approx(0.5)
    assert np.array_equal(small, np.array([0.3, 0.4], np.float32))


def test_infinite_max_norm_adds_noise_only():
    x = np.arange(8, dtype=np.float32)
    clip_and_noise(x, math.inf, 0.5, 1, 2, 3)
    noise = gaussian_noise(np.empty(8, np.float32), 0.5, 1, 2, 3)
    assert np.array_equal(x, (np.arange(8) + noise.astype(np.float64)).astype(np.float32))


@pytest.mark.parametrize("call, message", [
    (lambda: gaussian_noise(np.empty(4, np.float32), 1.0, -1, 0, 0), "seed must be an integer in"),
    (lambda: gaussian_noise(np.empty(4, np.float32), 1.0, 0, 2**32, 0), "rank must be an integer in"),
    (lambda: gaussian_noise(np.empty(4, np.float32), 1.0, 0, 0, 1.5), "step must be an integer in"),
    (lambda: gaussian_noise(np.empty(4, np.float32), -1.0, 0, 0, 0), "std must be finite and non-negative"),
    (lambda: gaussian_noise(np.empty(4, np.float64), 1.0, 0, 0, 0), "1-D float32"),
    (lambda: gaussian_noise(np.empty((2, 2), np.float32), 1.0, 0, 0, 0), "1-D float32"),
    (lambda: clip_and_noise(np.ones(4, np.float32), 0.0, 1.0, 0, 0, 0), "max_norm must be positive"),
    (lambda: clip_and_noise(np.array([1, np.nan], np.float32), 1.0, 1.0, 0, 0, 0), "NaN or infinite"),
])
def test_bad_arguments_are_rejected_with_the_argument_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
