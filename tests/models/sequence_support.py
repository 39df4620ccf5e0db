"""A small longitudinal cohort for the sequence tests: a context per patient (sex, age, treatment arm), irregular
visit intervals that shorten in arm B, an AR(1)-like haemoglobin with a downward drift in arm B, a platelet
count missing at about a third of visits, and a progression flag that, once raised, ends the record."""
from __future__ import annotations

import numpy as np
import pandas as pd

from hpcsynth.data.sequences import Sequences

KEY, INDEX = "patient_id", "day"


def cohort(n: int = 300, seed: int = 0, first_key: int = 0, max_visits: int = 25) -> Sequences:
    """`n` patients keyed `first_key`, `first_key` + 1, ...; 1 to `max_visits` visits each."""
    rng = np.random.default_rng(seed)
    keys = np.arange(first_key, first_key + n)
    arm = rng.choice(["A", "B"], n, p=[0.6, 0.4])
    context = pd.DataFrame({KEY: keys, "sex": rng.choice(["F", "M"], n), "age": rng.normal(65, 8, n).round(1),
                            "arm": arm})
    rows = []
    for key, a in zip(keys, arm):
        b = a == "B"
        length = int(min(rng.geometric(0.2 if b else 0.12), max_visits))
        gaps = rng.lognormal(np.log(30 if b else 90), 0.4, length - 1)
        days = np.concatenate([[0.0], np.cumsum(gaps)]).round(1)
        hb = np.empty(length)
        hb[0] = rng.normal(11.5 if b else 12.5, 1.0)
        for t in range(1, length):
            hb[t] = 12.0 + 0.7 * (hb[t - 1] - 12.0) - (0.3 if b else 0.0) + rng.normal(0, 0.5)
        plt = rng.lognormal(np.log(150), 0.3, length).round()
        plt[rng.random(length) < 0.33] = np.nan
        progression = np.zeros(length, dtype=int)
        if b and rng.random() < 0.5:
            progression[-1] = 1
        rows.append(pd.DataFrame({KEY: key, INDEX: days, "hb": hb.round(2), "plt": plt,
                                  "progression": progression}))
    visits = pd.concat(rows, ignore_index=True)
    return Sequences(context, visits, KEY, INDEX)
