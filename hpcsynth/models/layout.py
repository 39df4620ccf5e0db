"""The column layouts of the generators' networks, from a fitted transform's spans: which outputs are Gaussian
and which softmax blocks share a width, so that a loss or an activation over every block is a handful of batched
operations however many columns a table has (TVAE, CTGAN, TabDDPM)."""
from __future__ import annotations

import torch


def span_indices(spans: list[tuple[str, int]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Column indices of the Gaussian outputs, and of the softmax blocks grouped by width (one (k, width)
    index tensor per width), so the loss is a handful of batched operations however many columns there are."""
    gaussian, groups, start = [], {}, 0
    for kind, width in spans:
        if kind == "gaussian":
            gaussian.append(start)
        else:
            groups.setdefault(width, []).append(list(range(start, start + width)))
        start += width
    return torch.tensor(gaussian, dtype=torch.long), [torch.tensor(g, dtype=torch.long) for g in groups.values()]


def column_order(spans: list[tuple[str, int]]) -> tuple[torch.Tensor, int, list[tuple[int, int]]]:
    """The networks' column order (TVAE, CTGAN), which makes a loss or an activation a few operations on
    contiguous slices however many columns there are: the Gaussian columns first, then the softmax blocks grouped
    by width, each group level-major (all its blocks' first levels, then all their second levels, ...), so the
    softmax or log-sum-exp of every block of a group is one reduction over the levels of a view (CTGAN's (rows,
    width, blocks), TVAE's (width, blocks x rows) of its transposed outputs). Returns that order (position ->
    encoded column), the number of Gaussian columns and (width, blocks) per group."""
    gaussian, groups, start = [], {}, 0
    for kind, width in spans:
        if kind == "gaussian":
            gaussian.append(start)
        else:
            groups.setdefault(width, []).append(start)
        start += width
    order = gaussian + [s + j for w in sorted(groups) for j in range(w) for s in groups[w]]
    return torch.tensor(order, dtype=torch.long), len(gaussian), [(w, len(groups[w])) for w in sorted(groups)]
