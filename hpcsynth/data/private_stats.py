"""Differentially private release of the statistics that the shared table transform is fitted from.

Why: the transform is fitted from what every site contributes: ranges, histograms, category levels and counts.
Without noise these are exact functions of each site's rows. A patient with an extreme value fixes a column's
minimum or maximum, and a category label seen once names a patient. When a run has a privacy budget, each site
adds Gaussian noise to its own contribution before the Allreduce. Each site is then private with respect to its
own rows, the same guarantee as its DP-SGD training, and the epsilon is charged to the same accountant.

Mechanisms. Neighbouring tables differ by adding or removing one row. A row adds 1 to exactly one count of
every release, so every release has L2 sensitivity 1 and is a Gaussian mechanism with noise multiplier ``z``
(standard deviation ``z`` per count, per site):

* **Histograms** (the quantile map's grid, its missing count, and category counts): counts plus N(0, z^2).
  Negative merged counts are set to 0. On a private run the grid has `PRIVATE_GRID_BINS` bins instead of 4,096,
  so the noise, summed along the CDF, stays small against the counts.
* **Ranges**: a histogram on a public grid (0, then one bucket per doubling of |x| from 1e-3 to 1e9 on each
  side). The range spans the buckets whose merged noisy count clears a threshold. The threshold is set so that
  an empty bucket of a column passes with probability at most `FALSE_BUCKET` (1%). The price is a range that
  can fall short of a sparse tail or reach up to one bucket (twice the value) past it. Public bounds (`data.bounds`) skip
  this release.
* **Category levels** (Gaussian partition selection; Korolova et al., WWW 2009; Gopi et al., ICML 2020): a site
  proposes a level only if its noisy local count clears ``tau = 1 + z * Phi^-1(1 - delta_levels / C)``, for C
  columns selected this way. A level held by a single patient is released with probability at most
  ``delta_levels / C``, so at most ``delta_levels`` for the patient in all. The union of the proposals is the
  shared level set. A level no site releases is coded as missing. A binary column's levels {0, 1} are public
  by its kind, and `data.levels` declares others.

Not covered: the column names and kinds, which the sites agree on as metadata; declare kinds in `data.kinds`
so that none is inferred from the rows.

Accounting: the R releases enter Opacus's accountant as one history entry ``(z, 1.0, R)`` (sample rate 1),
ahead of the DP-SGD steps. ``z`` is calibrated so that the releases alone spend `statistics_share` of the
epsilon. ``delta_levels = delta / 10`` is set aside from the delta that the accountant is given, whenever the
statistics are private.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtri

from hpcsynth.data.schema import ColumnSpec, DataError
from hpcsynth.comm import Communicator

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


@dataclass
class StatisticsNoise:
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

    def perturb(self, local: np.ndarray) -> np.ndarray:
        """This site's counts plus N(0, z^2) noise on each: one release, counted for the accountant."""
        self.releases += 1
        return np.asarray(local, dtype=np.float64) + self.rng.normal(0.0, self.noise_multiplier, np.shape(local))

    def release(self, local: np.ndarray, comm: Communicator) -> np.ndarray:
        """Sum over sites of each site's noisy counts (collective)."""
        return comm.Allreduce(self.perturb(local), "sum")

    def merged_std(self, comm: Communicator) -> float:
        """The standard deviation of the noise in a merged count: every site added its own."""
        return self.noise_multiplier * np.sqrt(comm.size)

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
        from hpcsynth.federated.privacy import calibrate

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
