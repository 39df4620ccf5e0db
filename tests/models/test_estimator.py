"""The estimator contract every family follows: fit, sample with conditions, save, load, parameters."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from hpcsynth.models import CTGAN, TVAE, VAEBGM, BayesianNetwork, Generator, TabDDPM

FAMILIES = {
    "tvae": lambda: TVAE(epochs=2, batch_size=64, hidden=[8], latent_dim=4, compile="off", seed=1),
    "ctgan": lambda: CTGAN(epochs=2, batch_size=50, embedding_dim=8, generator_dim=[8], discriminator_dim=[8],
                           pac=5, compile="off", seed=1),
    "vae_bgm": lambda: VAEBGM(epochs=2, batch_size=64, hidden=[8], latent_dim=4, n_components=3, compile="off",
                              seed=1),
    "ddpm": lambda: TabDDPM(epochs=2, batch_size=64, hidden=[8], time_dim=8, diffusion_steps=20, compile="off",
                            seed=1),
    "bayesnet": lambda: BayesianNetwork(n_bins=4, seed=1),
}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 300
    sex = rng.choice(["F", "M"], n)
    return pd.DataFrame({"age": rng.normal(60, 10, n) + (sex == "F") * 5, "sex": sex,
                         "risk": rng.choice(["low", "mid", "high"], n, p=[0.5, 0.3, 0.2]),
                         "event": rng.integers(0, 2, n)})


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def fitted(request, frame) -> Generator:
    return FAMILIES[request.param]().fit(frame)


def test_every_family_samples_rows_that_meet_the_conditions(fitted):
    sample = fitted.sample(40, seed=3, conditions={"sex": "F", "risk": "high"})
    assert len(sample) == 40 and list(sample.columns) == ["age", "sex", "risk", "event"]
    assert (sample["sex"] == "F").all() and (sample["risk"] == "high").all()


def test_a_loaded_model_samples_the_same_rows_with_the_same_seed(fitted, tmp_path):
    fitted.save(tmp_path / "model.h5")
    loaded = Generator.load(tmp_path / "model.h5")
    assert type(loaded) is type(fitted) and loaded.get_params() == _listed(fitted.get_params())
    pd.testing.assert_frame_equal(loaded.sample(60, seed=4), fitted.sample(60, seed=4))
    conditions = {"event": 1}
    pd.testing.assert_frame_equal(loaded.sample(30, seed=5, conditions=conditions),
                                  fitted.sample(30, seed=5, conditions=conditions))


def test_the_family_class_loads_its_own_files_and_refuses_another_familys(fitted, tmp_path):
    fitted.save(tmp_path / "model.h5")
    assert type(type(fitted).load(tmp_path / "model.h5")) is type(fitted)
    other = BayesianNetwork if not isinstance(fitted, BayesianNetwork) else TVAE
    with pytest.raises(ValueError, match="not a"):
        other.load(tmp_path / "model.h5")


def test_the_saved_file_holds_numbers_and_text_and_no_pickle_and_is_the_owners_alone(fitted, tmp_path):
    path = tmp_path / "model.h5"
    old = os.umask(0)
    try:
        fitted.save(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # weights: a statistic of the training rows
    raw = path.read_bytes()
    assert not any(marker in raw for marker in (b"\x80\x02", b"\x80\x03\x8a", b"\x80\x04\x95", b"\x80\x05\x95"))
    with h5py.File(path, "r") as f:
        datasets = []
        f.visititems(lambda name, item: datasets.append(item) if isinstance(item, h5py.Dataset) else None)
        for dataset in datasets:
            assert dataset.dtype.kind in "biuf" or h5py.check_string_dtype(dataset.dtype), dataset.name
        assert all(isinstance(value, (str, int, np.integer)) for value in f.attrs.values())


def test_get_params_set_params_and_clone_round_trip(fitted):
    params = fitted.get_params()
    twin = clone(fitted)
    assert type(twin) is type(fitted) and twin.get_params() == params and not hasattr(twin, "transformer_")
    assert twin.set_params(seed=9) is twin and twin.seed == 9 and fitted.seed == 1
    with pytest.raises(ValueError, match="no parameter 'nonsense'"):
        twin.set_params(nonsense=1)
    assert "seed=1" in repr(fitted)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_hyperparameters_are_named_keywords_with_defaults(name):
    cls = type(FAMILIES[name]())
    assert cls.param_names() and "seed" in cls.param_names()
    cls()  # every hyperparameter has a default
    with pytest.raises(TypeError):
        cls(1)  # keyword-only


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_hyperparameter_is_documented(name):
    cls = type(FAMILIES[name]())
    documented = {word.strip() for line in cls.__doc__.splitlines() if " : " in line
                  for word in line.split(" : ")[0].split(",")}
    assert set(cls.param_names()) <= documented, set(cls.param_names()) - documented


def test_sampling_or_saving_before_fitting_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="call fit"):
        TVAE().sample(5)
    with pytest.raises(RuntimeError, match="call fit"):
        BayesianNetwork().save(tmp_path / "model.h5")


def test_a_file_that_save_did_not_write_is_refused(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(ValueError, match="not a generator file"):
        Generator.load(tmp_path / "other.h5")


def test_the_models_never_unpickle():
    for path in Path(__file__).parents[2].joinpath("hpcsynth", "models").glob("*.py"):
        source = path.read_text()
        assert "import pickle" not in source, path
        assert source.count("torch.load(") == source.count("weights_only=True)"), path


def test_importing_the_models_has_no_side_effects():
    code = ("import os, sys, torch; env, threads, state = dict(os.environ), torch.get_num_threads(), "
            "torch.get_rng_state(); import hpcsynth.models; "
            "assert dict(os.environ) == env and torch.get_num_threads() == threads; "
            "assert torch.equal(torch.get_rng_state(), state) and 'mpi4py.MPI' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def _listed(params: dict) -> dict:
    """Parameters as JSON gives them back (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
