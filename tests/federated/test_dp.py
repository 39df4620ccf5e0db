"""Differential privacy: calibration and accounting against Opacus's own accountants, exact per-sample
gradients, clipping and noise of the right size, the budget never exceeded, and a private run end to end."""
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from hpcsynth.comm import SoloComm
from hpcsynth.data.accounting import BudgetError, calibrate
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.federated.loop import train_rounds
from hpcsynth.federated.privacy import Clipper, GaussianNoise, PhiloxNoise, make_dpsgd
from hpcsynth.federated.registry import make_strategy
from hpcsynth.kernels import gaussian_noise
from hpcsynth.models import TVAE, TabDDPM
from model_support import per_sample_matrix

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_calibrated_noise_spends_the_budget_by_opacus_own_accountant(accountant):
    from opacus.accountants import create_accountant

    sigma = calibrate(epsilon=2.0, delta=1e-5, sample_rate=0.05, steps=400, accountant=accountant)
    reference = create_accountant(accountant)
    for _ in range(400):
        reference.step(noise_multiplier=sigma, sample_rate=0.05)
    spent = reference.get_epsilon(1e-5)
    assert 1.95 <= spent <= 2.0 + 1e-9


def test_site_accountant_matches_opacus_step_by_step():
    from opacus.accountants import RDPAccountant

    mechanism = make_dpsgd(3.0, 1e-5, 1.0, "rdp", 0.1, 50, torch.Generator())
    reference = RDPAccountant()
    for _ in range(20):
        mechanism.accountant.step()
        reference.step(noise_multiplier=mechanism.accountant.sigma, sample_rate=0.1)
    assert mechanism.accountant.epsilon() == pytest.approx(reference.get_epsilon(1e-5), rel=1e-12)
    assert mechanism.accountant.epsilon_after(30) == pytest.approx(3.0, abs=0.05)
    assert mechanism.accountant.epsilon() == pytest.approx(reference.get_epsilon(1e-5), rel=1e-12)


def test_an_unreachable_budget_is_refused_with_the_option_named():
    with pytest.raises(BudgetError, match="privacy.epsilon: 0.001 cannot be met"):
        calibrate(1e-3, 1e-9, 1.0, 10_000, "rdp")


def test_clipping_bounds_every_row_and_keeps_small_ones():
    weights, bias = torch.tensor([[[3.0], [0.0]], [[0.3], [0.0]]]), torch.tensor([[4.0], [0.4]])
    clipper = Clipper(1.0)
    assert torch.allclose(clipper.scales([weights, bias]), torch.tensor([0.2, 1.0]))
    assert torch.allclose(clipper.clipped_sum([weights, bias]), torch.tensor([0.6 + 0.3, 0.0, 0.8 + 0.4]))


def test_noise_has_standard_deviation_sigma_times_c():
    sample = GaussianNoise(2.0, 0.5, torch.Generator().manual_seed(0))(torch.zeros(200_000))
    assert abs(float(sample.mean())) < 0.01 and abs(float(sample.std()) - 1.0) < 0.01


def small_model(private_steps: int | None = None, sample_rate: float = 0.2, family: str = "tvae"):
    frame = pd.DataFrame({"x": RNG.normal(size=300), "c": RNG.choice(["a", "b"], 300)})
    transformer = TableTransformer().fit(frame)
    if family == "tvae":
        model = TVAE(hidden=[8], latent_dim=3, seed=0, batch_size=60)
    else:
        model = TabDDPM(hidden=[8], seed=0, batch_size=60, diffusion_steps=50)
    model.setup(transformer)
    if private_steps is not None:
        model.make_private(make_dpsgd(2.0, 1e-5, 1.0, "rdp", sample_rate, private_steps, torch.Generator()))
    return model, model.to_device(transformer.encode(frame))


@pytest.mark.parametrize("family", ["tvae", "ddpm"])
def test_per_sample_gradients_equal_autograd_row_by_row(family):
    model, data = small_model(private_steps=100, family=family)
    batch, noise = data[:5], model.loss_noise(5)
    per_sample = per_sample_matrix(model.privacy_, batch, noise)
    for i in range(5):
        model.flat_.zero_grad()
        model.loss(batch[i:i + 1], noise[i:i + 1]).backward()
        assert torch.allclose(per_sample[i], model.flat_.grad, atol=1e-5)


def test_the_blockwise_clipped_sum_equals_clipping_the_per_sample_matrix():
    model, data = small_model(private_steps=100)
    mechanism, batch, noise = model.privacy_, data[:40], model.loss_noise(40)
    matrix = per_sample_matrix(mechanism, batch, noise)
    mechanism.clipper.max_norm = float(matrix.norm(dim=1).median())  # half the rows clipped, half kept
    factor = torch.clamp(mechanism.clipper.max_norm / matrix.norm(dim=1), max=1.0)
    expected = (matrix * factor[:, None]).sum(0)
    got = mechanism.clipper.clipped_sum(mechanism.per_sample_gradients(batch, noise))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def kernel_stream(n, seed, rank, step):
    return torch.from_numpy(gaussian_noise(np.empty(n, np.float32), 1.0, seed, rank, step))


def test_philox_noise_draws_the_kernel_stream_one_step_per_call():
    noise = PhiloxNoise(2.0, 0.5, seed=3, rank=1)
    for step in range(3):
        assert torch.equal(noise(torch.zeros(2, 50)), kernel_stream(100, 3, 1, step).reshape(2, 50))
    assert noise.step == 3


def test_a_private_step_adds_sigma_c_times_the_kernel_stream():
    model, data = small_model()
    model.make_private(make_dpsgd(2.0, 1e-5, 1.0, "rdp", 0.2, 100, (7, 2)))
    mechanism, state = model.privacy_, model.train_generator_.get_state()
    _, expected = mechanism.gradient(data)
    noisy = model.shared_gradients().clone()
    model.train_generator_.set_state(state)  # the same Poisson sample and loss draws, without noise
    mechanism.noise.std, mechanism.noise.step = 0.0, 0
    mechanism.gradient(data)
    added = (noisy - model.shared_gradients()) * expected
    sigma_c = mechanism.accountant.sigma * 1.0
    assert torch.allclose(added, sigma_c * kernel_stream(added.numel(), 7, 2, 0), rtol=1e-4, atol=1e-4)


def test_a_restored_mechanism_continues_the_philox_stream_and_the_accountant():
    planned = make_dpsgd(2.0, 1e-5, 1.0, "rdp", 0.2, 100, (5, 0))
    for _ in range(4):
        planned.noise(torch.zeros(10))
        planned.accountant.step()
    restored = make_dpsgd(2.0, 1e-5, 1.0, "rdp", 0.2, 100, (5, 0))
    restored.load_state(planned.state())
    assert planned.state()["noise"] == 4
    assert restored.accountant.epsilon() == planned.accountant.epsilon() > 0
    assert torch.equal(restored.noise(torch.zeros(10)), planned.noise(torch.zeros(10)))
    assert torch.allclose(restored.noise(torch.zeros(10)), restored.noise.std * kernel_stream(10, 5, 0, 5),
                          rtol=1e-6, atol=0)


def test_the_loop_stops_before_the_budget_is_exceeded():
    model, data = small_model(private_steps=12)  # planned for 12 steps; 5 steps a round, 10 rounds asked
    records = train_rounds(model, data, make_strategy("isolated"), SoloComm(), rounds=10, local_epochs=1,
                           batch_size=60)
    assert len(records) == 2 and records[-1].epsilon <= 2.0
    assert records[0].epsilon < records[1].epsilon


@pytest.mark.mpi
@pytest.mark.slow
def test_private_fedavg_run_records_the_budget_per_site_and_round(mpirun, write_job, tmp_path):
    job = write_job({"privacy": {"epsilon": 4.0, "delta": 1e-5, "max_grad_norm": 1.0}, "federation.rounds": 3})
    result = mpirun(3, [sys.executable, "-m", "hpcsynth.cli", "run", str(job)])
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "run.h5") as f:
        eps = f["rounds"][()]["epsilon"]
        assert np.all(np.diff(eps) > 0) and 3.8 <= eps[-1] <= 4.0
        privacy = f["privacy"].attrs
        assert privacy["epsilon_budget"] == 4.0 and len(privacy["noise_multiplier"]) == 3
        assert np.all(privacy["epsilon_spent"] <= 4.0) and np.all(privacy["noise_multiplier"] > 0.5)


def test_a_checkpoint_keeps_the_privacy_spent_and_the_noise_stream():
    first, data = small_model(private_steps=20)
    first.local_update(data, 3)
    blob, params = first.local_state(), first.shared_parameters().clone()
    first.local_update(data, 3)
    resumed, _ = small_model(private_steps=20)
    with torch.no_grad():
        resumed.shared_parameters().copy_(params)
    resumed.load_local_state(blob)
    resumed.local_update(data, 3)
    assert torch.equal(resumed.shared_parameters(), first.shared_parameters())
    assert resumed.privacy_.accountant.epsilon() == first.privacy_.accountant.epsilon() > 0
