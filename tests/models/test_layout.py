"""The networks' column layouts: Gaussian columns first, softmax blocks grouped by width, level-major."""
import torch

from hpcsynth.models.layout import column_order, span_indices

SPANS = [("softmax", 3), ("gaussian", 1), ("softmax", 2), ("softmax", 3), ("gaussian", 1)]


def test_the_column_order_groups_blocks_by_width_level_major():
    order, n_gaussian, groups = column_order(SPANS)
    # encoded columns: block A 0-2, Gaussian 3, block B 4-5, block C 6-8, Gaussian 9
    assert order.tolist() == [3, 9, 4, 5, 0, 6, 1, 7, 2, 8]
    assert n_gaussian == 2 and groups == [(2, 1), (3, 2)]
    assert sorted(order.tolist()) == list(range(10))


def test_span_indices_name_the_gaussian_columns_and_each_width_s_blocks():
    gaussian, groups = span_indices(SPANS)
    assert gaussian.tolist() == [3, 9]
    assert [g.tolist() for g in groups] == [[[0, 1, 2], [6, 7, 8]], [[4, 5]]]
    assert all(g.dtype == torch.long for g in groups)
