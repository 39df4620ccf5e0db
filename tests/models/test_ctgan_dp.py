"""DP-CTGAN: DP-SGD on the critic (and the survival head, which reads rows too), one row per example, the
generator never reading a row."""
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.federated.privacy import make_dpsgd
from hpcsynth.models import CTGAN
from hpcsynth.models.ctgan import NORM_FLOOR

RNG = np.random.default_rng(0)
FRAME = pd.DataFrame({"x": RNG.normal(size=300), "c": RNG.choice(["a", "b", "d"], 300),
                      "e": RNG.choice(["u", "v"], 300)})


def private_ctgan(pac: int = 1, steps: int = 100, frame: pd.DataFrame = FRAME,
                  **declared) -> tuple[CTGAN, torch.Tensor]:
    transformer = TableTransformer(**declared).fit(frame)
    model = CTGAN(pac=pac, seed=0, batch_size=60, generator_dim=[16], discriminator_dim=[16, 8], epochs=2)
    model.setup(transformer)
    model.make_private(make_dpsgd(2.0, 1e-5, 1.0, "rdp", 0.2, steps, (7, 0)))
    return model, model.to_device(transformer.encode(frame))


def per_example_gradients(model: CTGAN, real, fake, alpha, cond, keep) -> torch.Tensor:
    """The model's per-example gradients (vmap), one row per example, in the flat buffer's order."""
    params = {n: p.detach() for n, p in model._example.named_parameters()}
    grads = model._per_example(params, real, fake, alpha, cond, keep)
    return torch.cat([grads[n].reshape(len(real), -1) for n in model._example_names], dim=1)


def example_loss(model: CTGAN, real, fake, alpha, cond, keep) -> torch.Tensor:
    """One example's WGAN-GP critic loss by ordinary autograd on the critic itself."""
    rows = torch.stack([real, fake, alpha * real + (1 - alpha) * fake])
    scores, (by_data, by_cond) = model.critic_.scores(rows, cond[None], tail=1, keep=keep)
    norm = (by_data.square().sum() + by_cond.square().sum() + NORM_FLOOR).sqrt()
    return scores[1, 0] - scores[0, 0] + model.gp_lambda * (norm - 1) ** 2


def test_per_example_critic_gradients_equal_autograd_example_by_example():
    model, data = private_ctgan()
    model._row_index(data)
    model.critic_.train()
    real = model._data[:4]
    fake, alpha = torch.rand_like(real), torch.rand(4, 1)
    cond = torch.zeros(4, int(model.level_column_.numel()))
    cond[torch.arange(4), torch.tensor([0, 1, 3, 4])] = 1.0
    keep = [k.view(4, 3, -1) for k in model.critic_.keep_masks(12, model.device_)]
    per_example = per_example_gradients(model, real, fake, alpha, cond, keep)
    critic = list(model.critic_.parameters())
    for i in range(4):
        by_autograd = torch.autograd.grad(example_loss(model, real[i], fake[i], alpha[i], cond[i],
                                                       [k[i] for k in keep]), critic)
        assert torch.allclose(per_example[i], torch.cat([g.reshape(-1) for g in by_autograd]), atol=1e-5)


def test_every_critic_update_is_one_accountant_step_and_the_generator_reads_no_row():
    model, data = private_ctgan()
    model.discriminator_steps = 2
    assert model.private_steps_per_step == 2
    model.local_update(data, 3)
    assert len(model.privacy_.accountant.accountant.history) == 1
    assert model.privacy_.accountant.accountant.history[0][2] == 6  # (sigma, q, steps): 3 x 2 critic steps
    assert model._levels is model.original_levels_  # the generator's levels: the transform's counts
    assert model._rows_index is None  # no by-level index of the rows: training-by-sampling reads none


def test_the_critic_update_is_the_clipped_sum_plus_sigma_c_noise_over_the_expected_batch():
    model, data = private_ctgan()
    model._row_index(data)
    model.critic_.train()
    mechanism = model.privacy_
    state, cpu = model.train_generator_.get_state(), torch.random.get_rng_state()
    expected = model._private_critic_gradient()
    region = model._gradient_region(list(model.critic_.parameters()))
    noisy = region.clone()
    model.train_generator_.set_state(state)
    torch.random.set_rng_state(cpu)
    mechanism.noise.std = 0.0
    model._private_critic_gradient()
    assert expected == pytest.approx(0.2 * 300)
    assert float(region.norm()) * expected <= 1.0 * 300 + 1e-3  # every example's gradient clipped to C = 1
    added = (noisy - region) * expected
    assert float(added.std()) == pytest.approx(mechanism.accountant.sigma * 1.0, rel=0.1)


def test_the_survival_heads_gradient_is_clipped_and_noised_in_the_critics_per_example_step():
    from survival_support import simulate

    cohort = simulate(300, seed=0)
    model, data = private_ctgan(frame=cohort, categorical=["group"], time="time", event="event")
    model._row_index(data)
    model.critic_.train()
    real = model._data[:4]  # the covariates in the networks' order, then the event's block and the time
    fake, alpha = torch.rand((4, model.width_)), torch.rand(4, 1)
    cond = torch.zeros(4, int(model.level_column_.numel()))
    cond[torch.arange(4), torch.tensor([0, 1, 2, 4])] = 1.0
    keep = [k.view(4, 3, -1) for k in model.critic_.keep_masks(12, model.device_)]
    per_example = per_example_gradients(model, real, fake, alpha, cond, keep)
    params = [p for m in (model.critic_, model.time_head_) for p in m.parameters()]
    head = sum(p.numel() for p in model.time_head_.parameters())
    for i in range(4):
        loss = (example_loss(model, real[i, :model.width_], fake[i], alpha[i], cond[i], [k[i] for k in keep])
                + model.time_head_.loss(real[i:i + 1]))
        by_autograd = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
        torch.testing.assert_close(per_example[i], by_autograd, atol=1e-5, rtol=1e-4)
        assert per_example[i, -head:].abs().sum() > 0  # the head's part, clipped with the critic's
    before = model.time_head_.body[0].weight.detach().clone()
    model.local_update(data, 2)
    assert not torch.equal(before, model.time_head_.body[0].weight)
    assert model.privacy_.accountant.accountant.history[0][2] == 2  # the same steps: no release of its own


def test_a_packed_critic_is_refused_under_privacy():
    with pytest.raises(ValueError, match="model.pac"):
        private_ctgan(pac=10)


@pytest.mark.mpi
@pytest.mark.slow
def test_private_fedavg_ctgan_reports_the_epsilon_of_opacus_accountant_on_its_history(mpirun, write_job, tmp_path):
    from opacus.accountants import RDPAccountant

    job = write_job({"model": {"name": "ctgan", "batch_size": 100, "pac": 1, "discriminator_steps": 2,
                               "generator_dim": [32], "discriminator_dim": [32], "numeric": "quantile"},
                     "privacy": {"epsilon": 3.0, "delta": 1e-5, "max_grad_norm": 1.0}, "federation.rounds": 2})
    result = mpirun(3, [sys.executable, "-m", "hpcsynth.cli", "run", str(job)])
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "run.h5") as f:
        privacy = f["privacy"].attrs
        spent = np.asarray(privacy["epsilon_spent"])
        for sigma, rate, eps in zip(privacy["noise_multiplier"], privacy["sample_rate"], spent):
            accountant = RDPAccountant()
            n_rows = round(100 / rate)  # the site's rows: its batch over the sample rate
            # 2 rounds x 1 local epoch x the strategy's batches per epoch x 2 critic updates per generator update
            accountant.history = [(float(sigma), float(rate), 2 * -(-n_rows // 100) * 2)]
            assert eps == pytest.approx(accountant.get_epsilon(delta=float(privacy["accountant_delta"])), rel=1e-9)
        assert np.all(spent <= 3.0) and np.all(spent > 2.5)
