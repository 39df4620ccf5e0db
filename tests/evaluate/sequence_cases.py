"""Small longitudinal cohorts for the temporal evaluation's tests: a real-like cohort and broken "synthetic" ones.

The real-like cohort has what the temporal scores look for: labs that follow an AR(1) process around each
patient's own level (so consecutive visits are correlated), irregular visit intervals that shorten as a patient
nears progression, sequence lengths that vary, a haemoglobin that falls over the visits before progression (the
last visit of a progressor), and a lab that is not always measured. Each broken version keeps the real cohort's
marginals but breaks one property, so that every metric can be shown to detect what it claims.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hpcsynth.data.sequences import Sequences

KEY, INDEX = "patient_id", "day"
LABS = ("hb", "plt")
EVENT = "progression"


def from_frames(context: pd.DataFrame, visits: pd.DataFrame) -> Sequences:
    """A `Sequences` with the cases' key and index, visits sorted by key then index."""
    visits = visits.sort_values([KEY, INDEX], kind="stable").reset_index(drop=True)
    return Sequences(context.reset_index(drop=True), visits, KEY, INDEX)


def real_cohort(n_patients: int = 120, seed: int = 0, first_key: int = 0) -> Sequences:
    """Patients with 2 to 12 visits; hb and plt AR(1) (coefficient 0.8) around a patient level; intervals
    exponential around 90 days, shorter for patients at high risk; a third progress at their last visit, their hb
    falling over the three visits before it; plt missing at about a fifth of the visits."""
    rng = np.random.default_rng(seed)
    keys = np.arange(first_key, first_key + n_patients)
    risk = rng.uniform(0, 1, n_patients)
    context = pd.DataFrame({KEY: keys, "sex": rng.choice(["F", "M"], n_patients),
                            "age": rng.normal(70, 8, n_patients).round(1),
                            "arm": rng.choice(["A", "B"], n_patients)})
    rows = []
    for key, r in zip(keys, risk):
        n = int(np.clip(rng.poisson(4 + 6 * r), 2, 12))
        progresses = rng.random() < 0.6 * r
        gaps = rng.exponential(90 * (1.2 - r), n - 1) + 7
        if progresses:
            gaps[-3:] *= 0.5
        day = np.r_[0.0, np.cumsum(gaps)].round()
        day = np.r_[0.0, np.maximum.accumulate(np.maximum(day[1:], day[:-1] + 1))]
        labs = {}
        for lab, level, scale in (("hb", 10.0 - 2 * r, 1.0), ("plt", 150.0 - 60 * r, 25.0)):
            own = level + rng.normal(0, scale)
            x = np.empty(n)
            x[0] = own + rng.normal(0, scale)
            for t in range(1, n):
                x[t] = own + 0.8 * (x[t - 1] - own) + rng.normal(0, 0.6 * scale)
            labs[lab] = x
        if progresses:
            k = min(3, n - 1)
            labs["hb"][-k:] = labs["hb"][-k - 1] - np.arange(1, k + 1) * rng.uniform(0.4, 0.9)
        labs["plt"][rng.random(n) < 0.2] = np.nan
        event = np.zeros(n)
        event[-1] = float(progresses)
        rows.append(pd.DataFrame({KEY: key, INDEX: day, "hb": labs["hb"].round(2), "plt": labs["plt"].round(1),
                                  EVENT: event}))
    return from_frames(context, pd.concat(rows, ignore_index=True))


def faithful(real: Sequences, seed: int = 1) -> Sequences:
    """What a perfect generator releases: new patients drawn from the real cohort's own process (new keys)."""
    return real_cohort(real.n_patients, seed, first_key=10_000)


def shuffled_order(seqs: Sequences, seed: int = 2) -> Sequences:
    """The lab values of each patient in a random order over the same visit times (the event stays where it was):
    every marginal, length and interval kept, the order within patients lost (autocorrelation and the fall before
    progression gone)."""
    rng = np.random.default_rng(seed)
    visits = seqs.visits.copy()
    values = list(LABS)
    starts = np.flatnonzero(np.r_[True, visits[KEY].to_numpy()[1:] != visits[KEY].to_numpy()[:-1]])
    order = np.concatenate([s + rng.permutation(e - s) for s, e in zip(starts, np.r_[starts[1:], len(visits)])])
    visits[values] = visits[values].to_numpy()[order]
    return from_frames(seqs.context, visits)


def iid_labs(seqs: Sequences, seed: int = 3) -> Sequences:
    """Every lab value drawn independently from that lab's pooled values (its marginal, missing included): the
    right per-visit marginals with no patient level and no dynamics."""
    rng = np.random.default_rng(seed)
    visits = seqs.visits.copy()
    for lab in LABS:
        visits[lab] = rng.choice(visits[lab].to_numpy(), len(visits))
    return from_frames(seqs.context, visits)


def wrong_lengths(seqs: Sequences) -> Sequences:
    """Every patient cut to its first two visits (a progressor keeps its event on the second): lengths and the
    time profile wrong, intervals and per-visit values from the real cohort."""
    visits = seqs.visits
    position = visits.groupby(KEY).cumcount().to_numpy()
    last = visits.groupby(KEY)[EVENT].transform("max").to_numpy()
    kept = visits[position < 2].copy()
    kept.loc[position[position < 2] == 1, EVENT] = last[position < 2][position[position < 2] == 1]
    return from_frames(seqs.context, kept)


def stretched_intervals(seqs: Sequences, factor: float = 3.0) -> Sequences:
    """Every visit time multiplied by `factor`: intervals wrong, values, order and lengths kept."""
    visits = seqs.visits.copy()
    visits[INDEX] = visits[INDEX] * factor
    return from_frames(seqs.context, visits)


def split_sites(seqs: Sequences, n_sites: int) -> list[Sequences]:
    """The patients dealt to `n_sites` sites in turn (a patient's visits all on one site)."""
    keys = seqs.context[KEY].to_numpy()
    out = []
    for site in range(n_sites):
        mine = keys[site::n_sites]
        out.append(from_frames(seqs.context[seqs.context[KEY].isin(mine)],
                               seqs.visits[seqs.visits[KEY].isin(mine)]))
    return out


def shifted_lab(seqs: Sequences, lab: str, shift: float) -> Sequences:
    """`lab` moved by `shift` at every visit: its per-visit marginal and its time profile wrong, the dynamics
    kept."""
    visits = seqs.visits.copy()
    visits[lab] = visits[lab] + shift
    return from_frames(seqs.context, visits)
