"""Conditions for `sample(n, conditions={"column": value})` and rare-class upsampling, shared by every family:
those that condition natively (Bayesian network, CTGAN, diffusion) and those that filter their draws
(`rejection_sample`: TVAE, VAE-BGM).

A condition names a discrete column (categorical or binary) and one of its levels as the user sees it (a label
such as "M", or a number such as 1 for a binary flag). It is mapped once to the column's code on the shared
transform, so every family conditions on exactly the levels the transform knows; an unknown column, a numeric
column or an unseen level is an error naming it rather than a silent empty or unconditioned sample.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform


def condition_codes(transformer: TableTransformer, conditions: dict[str, Any] | None) -> dict[int, int]:
    """{column index: level code} for `conditions`; a value of None (or NaN) asks for the missing level."""
    codes: dict[int, int] = {}
    for name, value in (conditions or {}).items():
        if name not in transformer.columns:
            raise ValueError(f"conditions: unknown column {name!r}")
        index = transformer.columns.index(name)
        transform = transformer.transforms_[index]
        if not isinstance(transform, CategoricalTransform):
            raise ValueError(f"conditions: column {name!r} is numeric; only categorical and binary columns "
                             f"can be conditioned on")
        code = int(transform.codes(pd.Series([value], dtype=object))[0])
        if code >= transform.width or (code == len(transform.labels_) and not pd.isna(value)):
            raise ValueError(f"conditions: {name!r} has no level {value!r} (levels: {transform.labels_})")
        codes[index] = code
    return codes


MAX_REJECTION = 100  # rejection sampling gives up when fewer than 1 in this many draws meet the conditions


def rejection_sample(draw: Callable[[int], pd.DataFrame], n: int, codes: dict[int, int],
                     transformer: TableTransformer) -> pd.DataFrame:
    """`n` rows of `draw(m)` (at most m rows per call, streams continuing: a draw may reject some itself) that
    meet `codes` ({column index: level code}), in the order drawn; a ValueError when fewer than 1 in
    `MAX_REJECTION` draws meet them."""
    size, kept, found, drawn = max(n, 64), [], 0, 0
    while found < n or not kept:
        frame = draw(size)
        drawn += size
        meets = np.ones(len(frame), dtype=bool)
        for index, code in codes.items():
            transform = transformer.transforms_[index]
            meets &= transform.codes(frame[transform.spec.name]) == code
        kept.append(frame[meets])
        found += int(meets.sum())
        if found < n and drawn >= MAX_REJECTION * size:
            asked = {transformer.columns[i]: transformer.transforms_[i].from_codes(np.array([c]))[0]
                     for i, c in codes.items()}
            raise ValueError(f"conditions {asked}: only {found} of {drawn} generated rows meet them (fewer than 1 "
                             f"in {MAX_REJECTION}), too rare to sample by rejection; ask for fewer rows or a "
                             f"family that conditions natively (ctgan, ddpm, bayesnet)")
    return pd.concat(kept, ignore_index=True).iloc[:n].reset_index(drop=True)


def balanced_sample(model, n: int, column: str, seed: int | None = None) -> pd.DataFrame:
    """`n` rows with `column`'s levels equally represented (rare-class upsampling): each level's share is
    drawn by conditional sampling, so rare subgroups get as many synthetic rows as common ones."""
    transform = model.transformer_.transform_of(column)
    if not isinstance(transform, CategoricalTransform):
        raise ValueError(f"balanced_sample: column {column!r} is numeric")
    levels = list(transform.labels_)
    shares = np.full(len(levels), n // len(levels))
    shares[: n % len(levels)] += 1
    base = model.seed if seed is None else seed
    parts = [model.sample(int(k), seed=base + i, conditions={column: level})
             for i, (level, k) in enumerate(zip(levels, shares)) if k > 0]
    return pd.concat(parts, ignore_index=True)
