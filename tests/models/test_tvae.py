"""TVAE in one process: the estimator contract, kinds and labels of samples, reproducibility."""
import numpy as np
import pandas as pd
import pytest
import torch

from hpcsynth.data.mds import MDS_METADATA, simulate_mds
from hpcsynth.models import TVAE


@pytest.fixture(scope="module")
def cohort():
    return simulate_mds(n_patients=800, seed=3).drop(columns=["patient_id", "site"])


@pytest.fixture(scope="module")
def fitted(cohort):
    model = TVAE(epochs=15, batch_size=200, hidden=[64, 64], latent_dim=16, seed=1,
                 categorical=MDS_METADATA["categorical"], time="os_months", event="os_event")
    return model.fit(cohort)


def test_constructor_only_stores_parameters():
    model = TVAE(epochs=3, batch_size=7)
    assert model.epochs == 3 and model.batch_size == 7
    assert not [k for k in vars(model) if k.endswith("_")]


def test_samples_have_the_columns_kinds_and_labels_of_the_data(fitted, cohort):
    sample = fitted.sample(500)
    assert list(sample.columns) == list(cohort.columns) and len(sample) == 500
    assert set(sample["sex"].dropna()) <= set(cohort["sex"].dropna())
    assert set(sample["cyto_risk"].dropna()) <= set(cohort["cyto_risk"].dropna())
    assert set(sample["SF3B1"].dropna()) <= {0.0, 1.0}
    assert set(sample["os_event"].dropna()) <= {0.0, 1.0}
    for column in ("age", "hb", "plt", "os_months"):
        assert sample[column].min() >= cohort[column].min() and sample[column].max() <= cohort[column].max()
    # genes the smallest panel leaves untested are missing in the data, and so in the samples
    assert sample["KRAS"].isna().mean() > 0.05


def test_training_reduces_the_loss(fitted):
    assert fitted.losses_[-1] < 0.5 * fitted.losses_[0]


def test_same_seed_same_samples_and_different_seed_differs(cohort, fitted):
    again = TVAE(epochs=15, batch_size=200, hidden=[64, 64], latent_dim=16, seed=1,
                 categorical=MDS_METADATA["categorical"], time="os_months", event="os_event").fit(cohort)
    pd.testing.assert_frame_equal(fitted.sample(300), again.sample(300))
    assert not fitted.sample(300).equals(fitted.sample(300, seed=99))


def test_marginals_are_learned(fitted, cohort):
    sample = fitted.sample(2000)
    assert abs(sample["sex"].eq("M").mean() - cohort["sex"].eq("M").mean()) < 0.1
    assert abs(sample["age"].median() - cohort["age"].median()) < 5


def test_shared_parameters_are_the_models_parameters(fitted):
    flat = fitted.shared_parameters()
    assert flat.dim() == 1 and flat.numel() == sum(p.numel() for m in fitted.modules_ for p in m.parameters())
    before = fitted.sample(50)
    saved = flat.clone()
    with torch.no_grad():
        flat.zero_()
    assert not fitted.sample(50).equals(before)
    with torch.no_grad():
        flat.copy_(saved)
    pd.testing.assert_frame_equal(fitted.sample(50), before)


def test_local_state_restores_the_optimiser(cohort, fitted):
    model = TVAE(epochs=2, batch_size=200, hidden=[64, 64], latent_dim=16, seed=1)
    model.fit(cohort)
    blob, params = model.local_state(), model.shared_parameters().clone()
    data = model.to_device(model.transformer_.encode(cohort))
    model.local_update(data, 3)
    after_a = model.shared_parameters().clone()
    with torch.no_grad():
        model.shared_parameters().copy_(params)
    model.load_local_state(blob)
    model.local_update(data, 3)
    assert torch.equal(model.shared_parameters(), after_a)
