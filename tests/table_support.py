"""A random table of every column type the schema remembers, with missing values (for the dtype round trips)."""
import numpy as np
import pandas as pd

ROWS = 120


def gaps(values: pd.Series, rng: np.random.Generator) -> pd.Series:
    """Values with a random share (up to a fifth) missing."""
    return values.mask(rng.random(len(values)) < rng.uniform(0.02, 0.2))


def random_table(seed: int) -> pd.DataFrame:
    """One table of every column type the schema remembers; units, time zones and gaps vary with the seed."""
    rng = np.random.default_rng(seed)
    n = ROWS
    unit = rng.choice(["s", "ms", "us", "ns"])
    start = pd.Timestamp("2015-01-01") + pd.Timedelta(days=int(rng.integers(0, 2000)))
    stamps = pd.Series(start + pd.to_timedelta(rng.integers(0, 10**6, n), unit="m"))
    levels = ["low", "mid", "high"]
    return pd.DataFrame({
        "count": rng.integers(-5, 60, n),
        "visits": gaps(pd.Series(rng.integers(0, 9, n)), rng).astype("Int64"),
        "lab": gaps(pd.Series(rng.lognormal(2, 1, n)), rng),
        "dose": rng.normal(1, 0.2, n).astype("float32"),
        "smoker": rng.random(n) < 0.3,
        "treated": gaps(pd.Series(rng.random(n) < 0.5), rng).astype("boolean"),
        "ward": gaps(pd.Series(rng.choice(["A", "B", "C"], n), dtype=object), rng),
        "grade": rng.choice([1, 2, 10], n),
        "code": gaps(pd.Series(rng.choice(["x1", "y2"], n)), rng).astype("string"),
        "stage": pd.Categorical(rng.choice(levels, n), categories=levels, ordered=bool(rng.integers(2))),
        "seen": gaps(stamps, rng).astype(f"datetime64[{unit}]"),
        "admitted": stamps.dt.tz_localize("UTC").dt.tz_convert(rng.choice(["Europe/Oslo", "America/Lima"])),
    })
