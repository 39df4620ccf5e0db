"""The shared k-best list gives the same answer whatever order the candidates arrive in."""
import numpy as np

from hpcsynth.kernels.topk import insert


def test_insert_keeps_the_k_smallest_by_distance_then_index_in_any_arrival_order():
    rng = np.random.default_rng(0)
    d = rng.integers(0, 4, 50).astype(np.float64)
    expected = np.lexsort((np.arange(50), d))[:5]
    for _ in range(5):
        best_d, best_i = np.full(5, np.inf), np.full(5, np.iinfo(np.int64).max)
        for j in rng.permutation(50):
            insert(best_d, best_i, d[j], j)
        np.testing.assert_array_equal(best_i, expected)
        np.testing.assert_array_equal(best_d, d[expected])
