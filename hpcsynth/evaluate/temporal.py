"""Temporal fidelity from counts and sums: per-visit marginals, labs against time since entry, within-patient
autocorrelation, sequence lengths, visit intervals and the order of events.

Every score here is a function of counts or sums over the real visits, so it is exact under federation: each
site computes its share from its own held-out patients (whose visits all live on that site), one `Allreduce`
adds them, and the score equals the one on the pooled patients. The synthetic sequences are the release and are
the same on every site. Distributions (per-visit values, lengths, intervals) are compared as the project's column
shapes are (`hpcsynth.evaluate.fidelity`): 1 - KS for numbers, exact from the counts of real values below every
synthetic value, 1 - total variation for categories.

The within-patient autocorrelation at lag k of a lab is the pooled panel estimator
``sum_i sum_t d_it d_i,t+k / sum_i sum_t d_it^2`` with ``d_it`` the lab's value at the patient's t-th measured
visit minus the patient's own mean: it measures how a patient's values follow each other around that patient's
level, so neither a shift between patients nor the marginal alone can fake it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.data.sequences import Sequences
from hpcsynth.evaluate.fidelity import ks_counts, ks_from_counts, tv_from_counts
from hpcsynth.evaluate.pooling import summed

N_TIME_BINS = 8
LAGS = (1, 2)


def labs_of(seqs: Sequences, event: str | None = None) -> list[str]:
    """The numeric per-visit columns other than the event: the labs whose dynamics are scored."""
    return [c for c in seqs.visit_columns if c != event and pd.api.types.is_numeric_dtype(seqs.visits[c])]


def as_numbers(values: pd.Series) -> np.ndarray:
    """A column as floats (NaN where missing or not a number)."""
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _sorted_present(x: np.ndarray) -> np.ndarray:
    return np.sort(x[np.isfinite(x)])


def intervals(seqs: Sequences) -> np.ndarray:
    """The days between consecutive visits of every patient."""
    key, day = seqs.visits[seqs.key].to_numpy(), as_numbers(seqs.visits[seqs.index])
    same = key[1:] == key[:-1]
    return np.diff(day)[same]


def exact_shape(real: np.ndarray, synthetic: np.ndarray, comm: Communicator) -> float:
    """1 - the two-sample KS statistic of synthetic values against every site's real values pooled (collective)."""
    points = _sorted_present(synthetic)
    counts = summed(ks_counts(_sorted_present(real), points), comm)
    return 1.0 - ks_from_counts(points, counts)


def visit_marginals(real: Sequences, synthetic: Sequences, comm: Communicator | None = None) -> dict[str, float]:
    """{visit column: shape score} over the visit rows: 1 - KS for numbers, 1 - total variation over the levels of
    every site and the release (missing a level of its own) for the others (collective)."""
    comm = comm or SoloComm()
    scores = {}
    for column in real.visit_columns:
        r, s = real.visits[column], synthetic.visits[column]
        if pd.api.types.is_numeric_dtype(r):
            scores[column] = exact_shape(as_numbers(r), as_numbers(s), comm)
            continue
        mine = set(r.dropna().astype(str)) | set(s.dropna().astype(str))
        levels = sorted(set().union(*comm.allgather(sorted(mine))))

        def counts(values: pd.Series) -> np.ndarray:
            coded = pd.Categorical(values.astype("string"), categories=levels).codes
            return np.bincount(np.where(coded < 0, len(levels), coded), minlength=len(levels) + 1).astype(float)

        scores[column] = 1.0 - tv_from_counts(counts(s), summed(counts(r), comm))
    return scores


def length_similarity(real: Sequences, synthetic: Sequences, comm: Communicator | None = None) -> float:
    """1 - KS between the numbers of visits per patient, real (pooled over sites) against synthetic."""
    return exact_shape(real.lengths().to_numpy(float), synthetic.lengths().to_numpy(float), comm or SoloComm())


def interval_similarity(real: Sequences, synthetic: Sequences, comm: Communicator | None = None) -> float:
    """1 - KS between the inter-visit intervals (days), real (pooled over sites) against synthetic."""
    return exact_shape(intervals(real), intervals(synthetic), comm or SoloComm())


def autocorrelation_sums(seqs: Sequences, lab: str, lag: int) -> np.ndarray:
    """[sum of lag-`lag` products, sum of squares] of the lab's deviations from each patient's own mean, over its
    measured visits (a visit without the lab is skipped, not a gap): summable over sites."""
    present = seqs.visits[[seqs.key, lab]].dropna()
    key, x = present[seqs.key].to_numpy(), as_numbers(present[lab])
    if x.size == 0:
        return np.zeros(2)
    d = x - present.groupby(seqs.key, sort=False)[lab].transform("mean").to_numpy(dtype=np.float64)
    pairs = key[lag:] == key[:-lag] if x.size > lag else np.zeros(0, dtype=bool)
    return np.array([float(np.sum(d[lag:][pairs] * d[:-lag][pairs])), float(np.sum(d * d))])


def autocorrelation(seqs: Sequences, lab: str, lag: int, comm: Communicator | None = None) -> float:
    """The within-patient lag-`lag` autocorrelation of `lab` over every site's patients (collective; NaN when no
    patient has two different measured values)."""
    num, den = summed(autocorrelation_sums(seqs, lab, lag), comm or SoloComm())
    return float(num / den) if den > 0 else float("nan")


def event_order_counts(seqs: Sequences, event: str, lab: str) -> np.ndarray:
    """[event onsets preceded by a falling lab, event onsets where that can be told]: at a patient's first visit
    with the event, the lab's latest measured value (at or before it) below the measured value before that."""
    v = seqs.visits
    key, flag, x = v[seqs.key].to_numpy(), as_numbers(v[event]) > 0.5, as_numbers(v[lab])
    falling = told = 0
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    for start, end in zip(starts, np.r_[starts[1:], len(key)]):
        hits = np.flatnonzero(flag[start:end])
        if hits.size == 0:
            continue
        before = x[start:start + hits[0] + 1]
        measured = before[np.isfinite(before)]
        if measured.size >= 2:
            told += 1
            falling += int(measured[-1] < measured[-2])
    return np.array([falling, told], dtype=np.float64)


def falling_before_event(seqs: Sequences, event: str, lab: str, comm: Communicator | None = None) -> float:
    """The share of event onsets (every site's patients) at which `lab` had fallen since its previous
    measurement (collective; NaN without an onset where it can be told)."""
    falling, told = summed(event_order_counts(seqs, event, lab), comm or SoloComm())
    return float(falling / told) if told > 0 else float("nan")


@dataclass(frozen=True)
class TimeProfile:
    """One lab's mean and spread per bin of time since entry, real (pooled over sites) and synthetic.

    Parameters
    ----------
    lab : str
        The lab.
    edges : ndarray
        Bin edges in days since entry (the last bin also takes every later visit).
    real, synthetic : ndarray
        (3, bins): count of measured values, mean and standard deviation per bin (NaN where a bin is empty).
    """

    lab: str
    edges: np.ndarray
    real: np.ndarray
    synthetic: np.ndarray

    def gap(self) -> float:
        """Mean over bins, weighted by the real counts, of |synthetic mean - real mean| divided by the real
        values' overall standard deviation; bins without synthetic values are left out (NaN when none is left)."""
        n, mean, sd = self.real
        total = n.sum()
        overall = np.sqrt(np.nansum(n * (sd ** 2 + mean ** 2)) / total - (np.nansum(n * mean) / total) ** 2) \
            if total > 1 else float("nan")
        both = (n > 0) & (self.synthetic[0] > 0)
        if not both.any() or not overall > 0:
            return float("nan")
        return float(np.average(np.abs(self.synthetic[1][both] - mean[both]), weights=n[both]) / overall)


def _bin_sums(seqs: Sequences, lab: str, edges: np.ndarray) -> np.ndarray:
    """(3, bins) count, sum and sum of squares of the lab's measured values per time bin."""
    day, x = as_numbers(seqs.visits[seqs.index]), as_numbers(seqs.visits[lab])
    keep = np.isfinite(x) & np.isfinite(day)
    bins = np.clip(np.searchsorted(edges, day[keep], side="right") - 1, 0, len(edges) - 2)
    size = len(edges) - 1
    return np.stack([np.bincount(bins, minlength=size), np.bincount(bins, x[keep], size),
                     np.bincount(bins, x[keep] ** 2, size)]).astype(np.float64)


def _moments(sums: np.ndarray) -> np.ndarray:
    n, s, q = sums
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s / n, np.nan)
        sd = np.sqrt(np.maximum(np.where(n > 0, q / n, np.nan) - mean ** 2, 0.0))
    return np.stack([n, mean, sd])


def time_edges(real: Sequences, comm: Communicator | None = None, n_bins: int = N_TIME_BINS) -> np.ndarray:
    """`n_bins` equal bins from entry to the latest real visit of any site (collective)."""
    day = as_numbers(real.visits[real.index])
    latest = comm_max(float(np.nanmax(day)) if day.size else 0.0, comm or SoloComm())
    return np.linspace(0.0, max(latest, 1.0), n_bins + 1)


def comm_max(value: float, comm: Communicator) -> float:
    """The largest of every site's `value` (collective)."""
    return float(comm.Allreduce(np.array([value], dtype=np.float64), "max")[0])


def time_profiles(real: Sequences, synthetic: Sequences, labs: list[str], comm: Communicator | None = None,
                  n_bins: int = N_TIME_BINS) -> list[TimeProfile]:
    """Each lab against time since entry, real pooled over sites and synthetic, on shared bins (collective: one
    Allreduce for every lab)."""
    comm = comm or SoloComm()
    edges = time_edges(real, comm, n_bins)
    merged = summed(np.stack([_bin_sums(real, lab, edges) for lab in labs]) if labs else np.zeros((0, 3, n_bins)),
                    comm)
    return [TimeProfile(lab, edges, _moments(merged[i]), _moments(_bin_sums(synthetic, lab, edges)))
            for i, lab in enumerate(labs)]
