"""Histograms and contingency tables of coded columns against numpy's bincount and add.at, with missing codes
(negative) left out, any integer dtype, and out-of-range codes rejected."""
import numpy as np
import pytest

from hpcsynth.kernels import contingency, histogram


@pytest.mark.parametrize("dtype", [np.int8, np.uint16, np.int32, np.int64])
def test_histogram_equals_bincount_of_the_present_codes(rng, dtype):
    codes = rng.integers(-1 if np.dtype(dtype).kind == "i" else 0, 9, size=100_003).astype(dtype)
    counts = histogram(codes, 12)
    present = codes[codes >= 0].astype(np.int64)
    assert counts.dtype == np.int64 and counts.shape == (12,)
    np.testing.assert_array_equal(counts, np.bincount(present, minlength=12))


def test_contingency_equals_add_at_over_complete_rows(rng):
    a = rng.integers(-1, 5, size=50_001)
    b = rng.integers(-1, 3, size=50_001).astype(np.int16)
    expected = np.zeros((5, 3), np.int64)
    complete = (a >= 0) & (b >= 0)
    np.add.at(expected, (a[complete], b[complete]), 1)
    np.testing.assert_array_equal(contingency(a, b, 5, 3), expected)


def test_skewed_codes_and_empty_input():
    codes = np.zeros(10_000, np.int64)
    codes[::1000] = 3
    assert histogram(codes, 4).tolist() == [9990, 0, 0, 10]
    assert histogram(np.empty(0, np.int32), 2).tolist() == [0, 0]
    assert contingency(np.empty(0, np.int32), np.empty(0, np.int32), 2, 2).tolist() == [[0, 0], [0, 0]]


@pytest.mark.parametrize("call, message", [
    (lambda: histogram(np.array([0, 3, 1]), 3), "1 codes are at or above n_bins=3"),
    (lambda: contingency(np.array([0, 1]), np.array([0, 2]), 2, 2), "at or above n_a=2 or n_b=2"),
    (lambda: contingency(np.array([0, 1]), np.array([0]), 2, 2), "same length"),
    (lambda: histogram(np.array([0.0, 1.0]), 2), "integer codes"),
    (lambda: histogram(np.array([0, 1]), 0), "n_bins must be a positive integer"),
])
def test_bad_codes_and_sizes_are_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call()
