"""TVAE in one process: the estimator contract, kinds and labels of samples, reproducibility."""
import pandas as pd
import pytest
import torch

from hpcsynth.data.mds import MDS_METADATA, simulate_mds
from hpcsynth.models import TVAE
from model_support import assert_local_state_resumes


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
    assert_local_state_resumes(model, model.to_device(model.transformer_.encode(cohort)), 3)


def test_the_loss_is_the_per_column_loss(fitted, cohort):
    # the loss works in the networks' column order with one log-sum-exp per block width; it must equal SDV's
    # loss written column by column on the decoder's output in the encoded order, with the survival time and event
    # left to the survival head: the cross-entropy of each row's (event, quantile bin of the time)
    batch = fitted.to_device(fitted.transformer_.encode(cohort))[:64]
    noise = torch.randn((64, fitted.latent_dim), generator=torch.Generator().manual_seed(0))
    layout, head = fitted.survival_layout_, fitted.time_head_
    with torch.no_grad():
        ours = fitted.loss(batch, noise)
        mu, logvar = fitted.encoder_(batch)
        recon = torch.zeros_like(batch)
        recon[:, fitted.order_[:fitted.n_targets_]] = fitted.decoder_(noise * torch.exp(0.5 * logvar) + mu)
        sigma = torch.ones(batch.shape[1])
        sigma[fitted.order_[:fitted.n_gaussian_]] = fitted.decoder_.sigma
        total, start = torch.zeros(()), 0
        for kind, width in fitted.transformer_.spans:
            x, r = batch[:, start:start + width], recon[:, start:start + width]
            if start == layout.time or start in layout.event:
                pass
            elif kind == "gaussian":
                s = sigma[start]
                total = total + ((x - r) ** 2 / 2 / s**2).sum() + torch.log(s) * len(batch)
            else:
                total = total + torch.nn.functional.cross_entropy(r, x.argmax(dim=1), reduction="sum")
            start += width
        u = torch.distributions.Normal(0.0, 1.0).cdf(batch[:, layout.time])
        time_bin = (u * head.bins).long().clamp(max=head.bins - 1)
        outcome = batch[:, layout.event].argmax(dim=1) * head.bins + time_bin
        logits = head.body(batch[:, fitted.order_[:fitted.n_targets_]])
        total = total + torch.nn.functional.cross_entropy(logits, outcome, reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp())
        reference = (fitted.loss_factor * total + kl) / len(batch)
    assert ours == pytest.approx(float(reference), rel=1e-5)


def test_a_compiled_step_computes_the_eager_step(cohort):
    # the compiled step (one graph, forward and backward, writing the gradient buffer) against autograd
    options = dict(batch_size=200, hidden=[64, 64], latent_dim=16, seed=1, categorical=MDS_METADATA["categorical"])
    compiled = TVAE(epochs=1, compile="on", **options).fit(cohort)
    assert all(f.compiled for f in compiled._compiled.values()) and compiled.compile_s_ > 0
    assert TVAE(epochs=1, **options).fit(cohort).compile_s_ == 0.0  # `auto` leaves short runs eager
    eager = TVAE(epochs=1, compile="off", **options)
    eager.setup(compiled.transformer_)
    with torch.no_grad():
        eager.shared_parameters().copy_(compiled.shared_parameters())
    data = compiled.to_device(compiled.transformer_.encode(cohort))
    batch = compiled._train_rows(data)[:200]
    noise = torch.randn((200, 16), generator=torch.Generator().manual_seed(0))
    losses = [float(model._gradient_function("loss", model._autocast_loss, model.modules_)(batch, noise))
              for model in (eager, compiled)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert torch.allclose(compiled.shared_gradients(), eager.shared_gradients(), atol=1e-4, rtol=1e-4)


def test_the_fused_compiled_step_is_adams_step(cohort):
    # compiled, a step is one graph: loss, gradient and torch.optim.Adam's update on the optimiser's own state
    options = dict(epochs=3, batch_size=200, hidden=[64, 64], latent_dim=16, seed=1, precision="fp32",
                   categorical=MDS_METADATA["categorical"])
    fused, eager = TVAE(compile="on", **options).fit(cohort), TVAE(compile="off", **options).fit(cohort)
    assert "step" in fused._compiled and "step" not in eager._compiled
    assert fused.losses_ == pytest.approx(eager.losses_, rel=1e-5)
    assert torch.allclose(fused.shared_parameters(), eager.shared_parameters(), atol=1e-4)
    ours, theirs = (m.optimizer_.state_dict()["state"][0] for m in (fused, eager))
    assert float(ours["step"]) == float(theirs["step"]) == 3 * 4  # 800 rows in passes of 200
    assert torch.allclose(ours["exp_avg"], theirs["exp_avg"], atol=1e-3)
    # a checkpoint's moments replace the optimiser's state; the fused step must read the loaded ones
    assert_local_state_resumes(fused, fused.to_device(fused.transformer_.encode(cohort)), 3)


def test_an_epoch_of_fit_is_one_pass_over_the_rows(cohort):
    # as SDV and PyTorch's DataLoader count epochs: every row once, the last batch the rows left; federated
    # steps (local_update outside fit) keep whole batches
    model = TVAE(epochs=2, batch_size=300, hidden=[16], latent_dim=4, compile="off")
    batches, draw = [], model._next_batch
    model._next_batch = lambda data, size: batches.append(draw(data, size)) or batches[-1]
    model.fit(cohort)
    assert [len(b) for b in batches] == [300, 300, 200] * 2
    data = model.to_device(model.transformer_.encode(cohort))
    assert len(torch.unique(torch.cat(batches[:3]), dim=0)) == len(torch.unique(data, dim=0))
    batches.clear()
    model.local_update(data, 4)
    assert [len(b) for b in batches] == [300] * 4


def test_the_compiled_step_follows_what_its_loss_reads(cohort):
    # the compiled step checks no guards; a change of the latent-alignment target must still reach its loss
    model = TVAE(epochs=1, batch_size=200, hidden=[32], latent_dim=8, seed=2, precision="fp32", compile="on",
                 categorical=MDS_METADATA["categorical"]).fit(cohort)
    data = model.to_device(model.transformer_.encode(cohort))
    model.latent_target_ = (torch.full((8,), 3.0), torch.ones(8), 0.5)
    for _ in range(2):  # the second time with new target tensors of the same shape
        rng, position = model.train_generator_.get_state(), (model._order, model._cursor)
        with torch.no_grad():
            batch = model._next_batch(model._train_rows(data), 200)
            expected = float(model._train_loss(batch, model.loss_noise(200)))
        model.train_generator_.set_state(rng)
        model._order, model._cursor = position
        assert model.local_update(data, 1) == pytest.approx(expected, rel=1e-5)
        model.latent_target_ = (torch.full((8,), -1.0), torch.full((8,), 2.0), 0.5)
