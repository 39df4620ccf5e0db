"""The white-box loss-threshold membership attack on a generator's weights (hpcsynth.evaluate.whitebox)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hpcsynth.data.mds import simulate_mds
from hpcsynth.evaluate.attacks import membership_auroc
from hpcsynth.evaluate.whitebox import (
    rebuild,
    row_losses,
    site_whitebox_auroc,
    whitebox_membership_auroc,
    whitebox_note,
)
from hpcsynth.models import CTGAN, TVAE, BayesianNetwork

CATEGORICAL = ["sex", "cyto_risk", "ipssr_category"]
OPTIONS = dict(name="tvae", batch_size=60, hidden=[64, 64], latent_dim=16, compile="off", device="cpu",
               categorical=CATEGORICAL, time="os_months", event="os_event")


@pytest.fixture(scope="module")
def rows():
    """60 training rows and 60 held-out rows of one small MDS site."""
    frame = simulate_mds(n_patients=120, n_sites=1, seed=1).drop(columns=["patient_id", "site"])
    return frame.iloc[:60].reset_index(drop=True), frame.iloc[60:].reset_index(drop=True)


def _tvae(train, epochs: int, lr: float) -> TVAE:
    options = {k: v for k, v in OPTIONS.items() if k != "name"}
    return TVAE(epochs=epochs, lr=lr, seed=0, **options).fit(train)


@pytest.fixture(scope="module")
def overfit(rows):
    """A TVAE that has seen its 60 rows 300 times at a high learning rate: it memorises them."""
    return _tvae(rows[0], 300, 5e-3)


@pytest.fixture(scope="module")
def light(rows):
    """A TVAE after two steps: it has learnt nothing about any one row."""
    return _tvae(rows[0], 2, 1e-3)


def test_the_weights_of_an_overfit_tvae_give_its_training_rows_away_where_its_release_does_not(rows, overfit):
    train, holdout = rows
    whitebox = site_whitebox_auroc(overfit, train, holdout)
    blackbox = membership_auroc(overfit.sample(60, seed=1), train, holdout, overfit.transformer_)
    assert whitebox > 0.9
    assert whitebox > blackbox + 0.2


def test_the_weights_of_a_lightly_trained_tvae_tell_members_apart_no_better_than_chance(rows, light):
    assert abs(site_whitebox_auroc(light, *rows) - 0.5) < 0.12


def test_the_per_row_loss_is_fixed_by_the_seed_and_rebuilt_weights_give_the_same_losses(rows, overfit):
    train = rows[0].iloc[:10]
    params = overfit.shared_parameters().detach().cpu().numpy()
    again = rebuild(OPTIONS, 0, overfit.transformer_, params)
    first = row_losses(overfit, train, seed=3)
    np.testing.assert_allclose(row_losses(again, train, seed=3), first, rtol=1e-5)
    assert not np.allclose(row_losses(overfit, train, seed=4), first)  # other draws, other losses
    fresh = rebuild(OPTIONS, 0, overfit.transformer_, params * 0 + np.float32(0.01))
    assert not np.allclose(row_losses(fresh, train, seed=3), first)  # the parameters are really loaded


def test_the_consortium_figure_is_the_mean_of_the_sites_weighted_by_held_out_rows(sites, rows, light):
    train, holdout = rows
    shares = [(train.iloc[:30], holdout.iloc[:12]), (train.iloc[30:], holdout.iloc[12:])]  # 12 and 48 held out
    found = sites(lambda comm, k: whitebox_membership_auroc(light, *shares[k], comm, seed=0), 2)
    each = [site_whitebox_auroc(light, *share, seed=0) for share in shares]
    assert each[0] != pytest.approx(each[1])
    assert found == pytest.approx([(12 * each[0] + 48 * each[1]) / 60] * 2)


def test_a_bayesian_network_has_no_loss_to_attack_and_says_so(rows, light):
    train, holdout = rows
    model = BayesianNetwork(categorical=CATEGORICAL, time="os_months", event="os_event").fit(train)
    assert np.isnan(site_whitebox_auroc(model, train, holdout))
    assert whitebox_note(model).startswith("bayesnet: no per-row training loss")
    assert whitebox_note(light) is None


@pytest.fixture(scope="module")
def ctgan(rows):
    """A small CTGAN after a few steps (its critic's scores are what the attack reads, trained or not)."""
    return CTGAN(epochs=3, batch_size=20, pac=5, generator_dim=[16], discriminator_dim=[16], seed=0, compile="off",
                 categorical=CATEGORICAL, time="os_months", event="os_event").fit(rows[0])


def test_a_ctgan_row_loss_is_minus_its_critic_score_of_the_row_packed_with_itself_under_each_own_level(rows, ctgan):
    frame = rows[0].iloc[:4]
    data = ctgan.to_device(ctgan.transformer_.encode(frame))
    packs = data[:, ctgan.perm_].repeat(1, ctgan.pac)
    codes = ctgan._level_codes(data)
    ctgan.critic_.eval()
    by_hand = []
    with torch.no_grad():
        for column in range(codes.shape[1]):
            cond = torch.nn.functional.one_hot(codes[:, column], int(ctgan.level_column_.numel())).float()
            by_hand.append(ctgan.critic_(packs, cond.repeat(1, ctgan.pac))[:, 0])
    expected = -torch.stack(by_hand).mean(dim=0).double().numpy()
    np.testing.assert_allclose(row_losses(ctgan, frame, seed=0), expected, rtol=1e-5, atol=1e-6)
    assert len(set(np.round(expected, 6))) == 4  # the rows are told apart


def test_a_rebuilt_ctgan_gives_the_same_white_box_auroc_and_it_is_a_probability(rows, ctgan):
    options = dict(name="ctgan", batch_size=20, pac=5, generator_dim=[16], discriminator_dim=[16], compile="off",
                   categorical=CATEGORICAL, time="os_months", event="os_event")
    again = rebuild(options, 0, ctgan.transformer_, ctgan.shared_parameters().detach().cpu().numpy())
    found = site_whitebox_auroc(ctgan, *rows)
    assert 0.0 <= found <= 1.0 and whitebox_note(ctgan) is None
    assert site_whitebox_auroc(again, *rows) == pytest.approx(found)
