"""What a generator releases, pooled over sites and shared out over ranks, whatever its shape: a table (one row
per patient) or `Sequences` (patients and their visits). Strategies that move synthetic records between sites
(`sd_sharing`) and the jobs that pool a release go through these two functions, dispatched on the release's
type, so neither needs to know which shape a generator makes.
"""
from __future__ import annotations

from functools import singledispatch

import numpy as np
import pandas as pd

from hpcsynth.data.sequences import Sequences


def pool(releases: list) -> object:
    """The sites' releases as one, in site order (dispatched on the type of the first)."""
    return _pool(releases[0], releases)


@singledispatch
def _pool(first: object, releases: list) -> object:
    raise TypeError(f"no pooling for releases of type {type(first).__name__}")


@_pool.register
def _(first: pd.DataFrame, releases: list) -> pd.DataFrame:
    return pd.concat(releases, ignore_index=True)


@_pool.register
def _(first: Sequences, releases: list) -> Sequences:
    """Every site's patients, re-keyed 0..n-1 in site order (each site keys its own from 0)."""
    offsets = np.cumsum([0] + [r.n_patients for r in releases[:-1]])
    rekeyed = [_rekeyed(r, int(o)) for r, o in zip(releases, offsets)]
    return Sequences(pd.concat([r.context for r in rekeyed], ignore_index=True),
                     pd.concat([r.visits for r in rekeyed], ignore_index=True), first.key, first.index)


def _rekeyed(release: Sequences, offset: int) -> Sequences:
    keys = {k: i + offset for i, k in enumerate(release.context[release.key])}

    def rekey(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(**{release.key: frame[release.key].map(keys)})

    return Sequences(rekey(release.context), rekey(release.visits), release.key, release.index)


@singledispatch
def shard(release: object, index: int, count: int) -> object:
    """Every `count`-th record of `release` from the `index`-th: this rank's share of a pooled release."""
    raise TypeError(f"no sharding for releases of type {type(release).__name__}")


@shard.register
def _(release: pd.DataFrame, index: int, count: int) -> pd.DataFrame:
    return release.iloc[index::count].reset_index(drop=True)


@shard.register
def _(release: Sequences, index: int, count: int) -> Sequences:
    """Whole patients, never single visits."""
    return release.select(release.context[release.key].iloc[index::count])
