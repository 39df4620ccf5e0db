"""What goes in comes out, for every generator family: random tables mixing integers (plain and nullable),
floats, booleans, text and integer-coded categories, pandas Categoricals and datetimes, with missing values,
are sampled back with every column in its input dtype and only levels the input has."""
import numpy as np
import pandas as pd
import pytest

from hpcsynth.models import MODELS

SEEDS = (0, 1, 2, 3, 4)
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


SMALL = {"tvae": {"hidden": [16], "latent_dim": 4}, "vae_bgm": {"hidden": [16], "latent_dim": 4},
         "ctgan": {"generator_dim": [16], "discriminator_dim": [16], "embedding_dim": 8},
         "ddpm": {"hidden": [32], "diffusion_steps": 20, "sample_steps": 10}, "bayesnet": {"n_bins": 4}}


def fitted(name: str, frame: pd.DataFrame):
    """The family fitted for one epoch at a tiny size: the test is about types, not quality."""
    cls = MODELS[name]
    options = {"epochs": 1} if "epochs" in cls.param_names() else {}
    return cls(categorical=["grade"], seed=0, **options, **SMALL[name]).fit(frame)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_every_column_comes_out_in_its_input_dtype_with_only_input_levels(name, seed):
    frame = random_table(seed)
    out = fitted(name, frame).sample(150, seed=seed)
    assert list(out.columns) == list(frame.columns)
    assert {c: str(out[c].dtype) for c in frame} == {c: str(frame[c].dtype) for c in frame}
    for column in ("smoker", "treated", "ward", "grade", "code", "stage"):
        assert set(out[column].dropna()) <= set(frame[column].dropna()), column
    assert list(out["stage"].cat.categories) == list(frame["stage"].cat.categories)
    assert out["stage"].cat.ordered == frame["stage"].cat.ordered
