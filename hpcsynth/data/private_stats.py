"""Differentially private release of the statistics that the shared table transform is fitted from.

Ranges, histograms and category levels are exact functions of each site's rows (an extreme value fixes a
minimum; a label seen once names a patient). With `privacy.statistics_share` above 0 each site adds Gaussian
noise to its own contribution before the Allreduce, so it is private with respect to its own rows, like its
DP-SGD training, and the spend is charged to the same accountant. Every release has L2 sensitivity 1:
histograms are counts plus N(0, z^2) on a coarser grid (`PRIVATE_GRID_BINS`); ranges come from a noisy
histogram on a public power-of-two grid; category levels by Gaussian partition selection (Korolova et al.
2009; Gopi et al. 2020), with `delta / 10` set aside. Column names and kinds are metadata, not covered.
The mechanisms, thresholds and accounting in full: docs/notes/data.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtri

from hpcsynth.comm import Communicator
from hpcsynth.data.schema import ColumnSpec, DataError

PRIVATE_GRID_BINS = 64
FALSE_BUCKET = 0.01
LEVELS_DELTA_SHARE = 0.1
_BUCKETS_PER_DOUBLING = 1


def _public_edges() -> np.ndarray:
    """Bucket edges fixed before any data is seen: symmetric, geometric in |x| from 1e-3 to 1e9, with one bucket
    [-1e-3, 1e-3) around zero."""
    doublings = int(np.ceil(np.log2(1e9 / 1e-3)))
    magnitudes = 1e-3 * 2.0 ** (np.arange(doublings * _BUCKETS_PER_DOUBLING + 1) / _BUCKETS_PER_DOUBLING)
    return np.concatenate([-magnitudes[::-1], magnitudes])


PUBLIC_EDGES = _public_edges()


class SiteNoise:
    """A site's Gaussian mechanism: N(0, (z s)^2) on every value of a release of L2 sensitivity s, from the
    site's own seeded stream `rng`; each release counted in `releases`, the accountant's entry (z, 1, releases).
    The fields come from the dataclass that mixes it in."""

    noise_multiplier: float
    releases: int
    rng: np.random.Generator

    def perturb(self, local: np.ndarray, sensitivity: float = 1.0) -> np.ndarray:
        """This site's values plus N(0, (z * sensitivity)^2) noise on each: one release, counted."""
        self.releases += 1
        std = self.noise_multiplier * sensitivity
        return np.asarray(local, dtype=np.float64) + self.rng.normal(0.0, std, np.shape(local))

    def release(self, local: np.ndarray, comm: Communicator) -> np.ndarray:
        """Sum over sites of each site's noisy counts (collective)."""
        return comm.Allreduce(self.perturb(local), "sum")

    def merged_std(self, comm: Communicator) -> float:
        """The standard deviation of the noise in a merged count: every site added its own."""
        return self.noise_multiplier * np.sqrt(comm.size)


@dataclass
class StatisticsNoise(SiteNoise):
    """One site's Gaussian noise for its share of the transform statistics, and the releases it has made."""

    noise_multiplier: float
    levels_delta: float
    selected_columns: int
    seed: int
    rank: int
    releases: int = 0
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng([self.seed, self.rank, 0x5747])

    @property
    def level_threshold(self) -> float:
        """The noisy count a site's level must reach to be proposed."""
        return 1.0 + self.noise_multiplier * float(ndtri(1.0 - self.levels_delta / max(self.selected_columns, 1)))


@dataclass
class StatisticsBudget:
    """What the transform statistics of one site may spend: `epsilon` at the accountant's `delta`, plus
    `levels_delta` for the level selection (see the module docstring)."""

    epsilon: float
    delta: float
    levels_delta: float
    accountant: str
    seed: int

    def noise(self, schema: list[ColumnSpec], bounds: dict, levels: dict, numeric: str,
              rank: int) -> StatisticsNoise:
        """This site's noise, calibrated so that fitting `schema` spends exactly the budget."""
        from hpcsynth.data.accounting import calibrate

        releases, selected = count_releases(schema, bounds, levels, numeric)
        z = calibrate(self.epsilon, self.delta, 1.0, releases, self.accountant)
        return StatisticsNoise(z, self.levels_delta, selected, self.seed, rank)


def private_range(x: np.ndarray, noise: StatisticsNoise, comm: Communicator, column: str) -> tuple[float, float]:
    """The span of the public buckets that the merged noisy histogram shows to be occupied (collective)."""
    present = np.clip(x[np.isfinite(x)], PUBLIC_EDGES[0], PUBLIC_EDGES[-1])
    local, _ = np.histogram(present, bins=PUBLIC_EDGES)
    merged = noise.release(local, comm)
    n_buckets = PUBLIC_EDGES.size - 1
    occupied = np.flatnonzero(merged >= noise.merged_std(comm) * ndtri(1.0 - FALSE_BUCKET / n_buckets))
    if occupied.size == 0:
        raise DataError(f"column {column!r}: too few rows to release its range privately at this budget; "
                        f"declare it in data.bounds", everywhere=True)
    return float(PUBLIC_EDGES[occupied[0]]), float(PUBLIC_EDGES[occupied[-1] + 1])


def private_levels(counts: dict, noise: StatisticsNoise, comm: Communicator) -> set:
    """The union of the levels that each site's noisy local count lets it propose (collective)."""
    labels = list(counts)
    noisy = noise.perturb(np.fromiter(counts.values(), dtype=np.float64, count=len(labels)))
    proposed = {label for label, c in zip(labels, noisy) if c >= noise.level_threshold}
    return set().union(*comm.allgather(proposed))


def count_releases(schema: list[ColumnSpec], bounds: dict, levels: dict, numeric: str) -> tuple[int, int]:
    """(releases, columns whose levels are selected privately) that fitting this schema makes, per site."""
    releases = selected = 0
    for spec in schema:
        if spec.kind in ("categorical", "binary"):
            chosen = spec.kind == "categorical" and spec.name not in levels
            releases, selected = releases + 1 + chosen, selected + chosen
        else:
            if numeric != "quantile":
                raise DataError(f"model.numeric: {numeric} has no private fit; use the quantile transform with "
                                f"a privacy budget", everywhere=True)
            releases += 1 + (spec.name not in bounds)
    return releases, selected
