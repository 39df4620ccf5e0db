"""Conditions for `sample(n, conditions={"column": value})` and rare-class upsampling, shared by the generators
that can condition (Bayesian network, diffusion).

A condition names a discrete column (categorical or binary) and one of its levels as the user sees it (a label
such as "M", or a number such as 1 for a binary flag). It is mapped once to the column's code on the shared
transform, so every family conditions on exactly the levels the transform knows; an unknown column, a numeric
column or an unseen level is an error naming it rather than a silent empty or unconditioned sample.
"""
from __future__ import annotations

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
