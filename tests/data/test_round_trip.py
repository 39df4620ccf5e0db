"""What goes in comes out, for every generator family: random tables mixing integers (plain and nullable),
floats, booleans, text and integer-coded categories, pandas Categoricals and datetimes, with missing values,
are sampled back with every column in its input dtype and only levels the input has."""
import pandas as pd
import pytest

from hpcsynth.models import MODELS
from table_support import random_table

SEEDS = (0, 1, 2, 3, 4)


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
