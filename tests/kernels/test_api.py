"""nearest_neighbours rejects bad input with a clear message before any kernel runs."""
import numpy as np
import pytest

from hpcsynth.kernels import nearest_neighbours

GOOD = np.zeros((4, 3), np.float32)


@pytest.mark.parametrize("query, reference, kwargs, message", [
    (np.array([[0.0, np.nan, 1.0]]), GOOD, {}, "NaN or infinite"),
    (GOOD, np.full((4, 3), np.inf), {}, "NaN or infinite"),
    (GOOD, GOOD, {"k": 5}, "k must be between 1 and 4"),
    (GOOD, GOOD, {"k": 0}, "k must be between 1 and 4"),
    (GOOD, GOOD, {"k": 4, "exclude_self": True}, "k must be between 1 and 3"),
    (GOOD, GOOD, {"k": 2.0}, "k must be an integer"),
    (GOOD, GOOD, {"k": True}, "k must be an integer"),
    (GOOD, np.zeros((4, 2)), {}, "query has 3 columns but reference has 2"),
    (np.zeros((0, 3)), GOOD, {}, "query is empty"),
    (GOOD, np.zeros((0, 3)), {}, "reference is empty"),
    (np.zeros(3), GOOD, {}, "must be a 2-D array"),
    (GOOD, np.zeros((5, 3)), {"exclude_self": True}, "same number of rows"),
    (GOOD, GOOD, {"metric": "cosine"}, "unknown metric"),
    (np.array([["a", "b", "c"]]), GOOD, {}, "must hold real numbers"),
])
def test_invalid_input_raises_value_error(query, reference, kwargs, message):
    with pytest.raises(ValueError, match=message):
        nearest_neighbours(query, reference, **kwargs)


def test_host_and_cuda_arrays_cannot_be_mixed():
    class FakeCuda:
        __cuda_array_interface__ = {"shape": (4, 3), "typestr": "<f4", "data": (0, False), "version": 3}

    with pytest.raises(ValueError, match="both be CUDA arrays or both host arrays"):
        nearest_neighbours(GOOD, FakeCuda())


def test_lists_are_accepted_and_k_defaults_to_two():
    d, i = nearest_neighbours([[0.0], [10.0]], [[0.0], [1.0], [3.0]])
    np.testing.assert_array_equal(i, [[0, 1], [2, 1]])
    np.testing.assert_allclose(d, [[0, 1], [7, 9]])
