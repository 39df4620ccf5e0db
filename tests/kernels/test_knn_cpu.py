"""The CPU nearest-neighbour kernel equals a float64 brute force, including at ties and near-ties."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from knn_reference import brute_force_knn

from hpcsynth.kernels import knn_cpu, nearest_neighbours


def assert_exact(query, reference, k, exclude_self=False):
    """Indices equal the reference wherever the k-th and (k+1)-th reference distances differ by more
    than float64 noise; everywhere, every returned index sits at the right float64 distance."""
    d, i = nearest_neighbours(query, reference, k=k, exclude_self=exclude_self)
    ref_d, ref_i, full = brute_force_knn(query, reference, k, exclude_self)
    assert d.dtype == np.float32 and i.dtype == np.int64
    assert d.shape == i.shape == (len(query), k)
    np.testing.assert_allclose(d, ref_d, rtol=1e-6, atol=1e-6)
    got = np.take_along_axis(full, i, axis=1)
    np.testing.assert_allclose(got, ref_d, rtol=1e-12, atol=1e-12)
    assert all(len(set(row)) == k for row in i.tolist())
    sorted_full = np.sort(full, axis=1)
    gaps = np.diff(sorted_full[:, : k + 1], axis=1) if full.shape[1] > k else np.ones((len(query), k))
    clear = (gaps > 1e-9 * (1 + sorted_full[:, : gaps.shape[1]])).all(axis=1)
    np.testing.assert_array_equal(i[clear], ref_i[clear])
    return d, i


@pytest.mark.parametrize("d", [1, 3, 8, 50, 130])
def test_random_normal_matches_float64_reference(rng, d):
    q = rng.standard_normal((300, d)).astype(np.float32)
    r = rng.standard_normal((1100, d)).astype(np.float32)
    assert_exact(q, r, k=3)


def test_duplicated_reference_rows_resolve_to_the_lower_index(rng):
    base = rng.standard_normal((40, 6)).astype(np.float32)
    reference = np.concatenate([base, base, base[::-1]])
    d, i = nearest_neighbours(base, reference, k=3)
    ref_d, ref_i, _ = brute_force_knn(base, reference, 3)
    np.testing.assert_array_equal(i, ref_i)
    assert (d[:, :2] == 0).all()
    np.testing.assert_array_equal(i[:, 0], np.arange(40))


def test_integer_codes_with_many_exact_ties_follow_the_lower_index_rule(rng):
    q = rng.integers(0, 3, size=(200, 4)).astype(np.float32)
    r = rng.integers(0, 3, size=(700, 4)).astype(np.float32)
    d, i = nearest_neighbours(q, r, k=5)
    ref_d, ref_i, _ = brute_force_knn(q, r, 5)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_array_equal(d, ref_d.astype(np.float32))


def test_large_offset_and_near_duplicates_are_still_exact(rng):
    """Values around 1e4 with 1e-3 spread: the float32 expansion alone would misorder these."""
    r = (1e4 + 1e-3 * rng.standard_normal((900, 5))).astype(np.float32)
    q = (r[:200] + 1e-4 * rng.standard_normal((200, 5))).astype(np.float32)
    assert_exact(q, r, k=2)


def test_few_queries_many_references_split_the_reference(rng):
    q = rng.standard_normal((3, 7)).astype(np.float32)
    r = rng.standard_normal((9000, 7)).astype(np.float32)
    assert_exact(q, r, k=4)


def test_k_equal_to_reference_size_returns_everything_sorted(rng):
    q = rng.standard_normal((20, 3)).astype(np.float32)
    r = rng.standard_normal((4, 3)).astype(np.float32)
    d, i = assert_exact(q, r, k=4)
    assert (np.sort(i, axis=1) == np.arange(4)).all()


def test_exclude_self_drops_own_row_but_keeps_identical_rows(rng):
    x = rng.standard_normal((150, 4)).astype(np.float32)
    x[10] = x[3]
    d, i = assert_exact(x, x, k=2, exclude_self=True)
    assert (i != np.arange(150)[:, None]).all()
    assert i[3, 0] == 10 and i[10, 0] == 3 and d[3, 0] == 0


def test_float64_and_integer_inputs_are_exact(rng):
    q = rng.standard_normal((50, 9))
    r = rng.standard_normal((400, 9))
    assert_exact(q, r, k=2)
    qi = rng.integers(-5, 5, size=(50, 3))
    ri = rng.integers(-5, 5, size=(300, 3))
    d, i = nearest_neighbours(qi, ri, k=3)
    np.testing.assert_array_equal(i, brute_force_knn(qi, ri, 3)[1])


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_property_matches_reference_on_small_integer_grids(data):
    dim = data.draw(st.integers(1, 5))
    n = data.draw(st.integers(1, 30))
    m = data.draw(st.integers(1, 60))
    k = data.draw(st.integers(1, m))
    values = st.integers(-3, 3)
    q = data.draw(hnp.arrays(np.float32, (n, dim), elements=values.map(float)))
    r = data.draw(hnp.arrays(np.float32, (m, dim), elements=values.map(float)))
    d, i = nearest_neighbours(q, r, k=k)
    ref_d, ref_i, _ = brute_force_knn(q, r, k)
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_array_equal(d, ref_d.astype(np.float32))


def test_distances_float32_cannot_separate_fall_back_to_an_exact_search():
    """500 points on circles of radius 1000 + 1e-6 * (500 - j): in float32 they are all equally far, so
    the true nearest (the last index) is not among the float32 candidates; the certificate must notice."""
    j = np.arange(500)
    radius = 1000.0 + 1e-6 * (500 - j)
    angle = 2 * np.pi * j / 500
    reference = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    query = np.zeros((1, 2))
    d, i = nearest_neighbours(query, reference, k=2)
    np.testing.assert_array_equal(i, [[499, 498]])


@pytest.mark.parametrize("use_mkl", [True, False])
def test_mkl_and_numpy_products_are_both_exact(rng, monkeypatch, use_mkl):
    """The candidate pass runs MKL's sgemm where torch ships it, else numpy's BLAS: both must be exact, through
    the 64-wide mask scan (tiles of 512 columns), its tails (1,100 = 2 x 512 + 76) and exclude_self."""
    monkeypatch.setattr(knn_cpu, "USE_MKL", use_mkl)
    q = rng.standard_normal((300, 32)).astype(np.float32)
    r = rng.standard_normal((1100, 32)).astype(np.float32)
    assert_exact(q, r, k=3)
    x = np.concatenate([r, r[:40]])
    d, i = assert_exact(x, x, k=2, exclude_self=True)
    np.testing.assert_array_equal(i[1100:, 0], np.arange(40))


def test_mkl_sgemm_is_found_where_torch_ships_it():
    """On x86-64 Linux, torch's wheels export MKL's sgemm_; if a torch release stops doing so, the candidate
    pass silently halves its speed, so say so here."""
    import importlib.util
    import platform

    if importlib.util.find_spec("torch") is None or platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip("MKL comes with torch's x86-64 Linux wheels")
    assert all(knn_cpu._mkl())
