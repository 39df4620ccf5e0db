"""Strategies under real mpiexec: FedAvg and data-parallel centralized equal one pooled full-batch step."""
import sys
from pathlib import Path

import pytest
from gradient_support import hooked_and_autograd, tiny_tvae

PROGRAM = Path(__file__).with_name("programs") / "fedavg_step.py"


@pytest.mark.mpi
@pytest.mark.parametrize("strategy", ["fedavg", "centralized"])
def test_one_full_batch_step_per_site_equals_one_pooled_step(mpirun, strategy):
    result = mpirun(3, [sys.executable, str(PROGRAM), strategy], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "EQUAL" in result.stdout


@pytest.mark.mpi
def test_isolated_sites_do_not_equal_the_pooled_step(mpirun):
    result = mpirun(3, [sys.executable, str(PROGRAM), "isolated"], timeout=120)
    assert result.returncode != 0 and "max difference" in result.stdout + result.stderr


ADAPTIVE = Path(__file__).with_name("programs") / "adaptive_step.py"


@pytest.mark.mpi
def test_fedprox_mu0_is_fedavg_and_fedopt_is_a_hand_computed_fedadam_with_and_without_secure_aggregation(mpirun):
    result = mpirun(3, [sys.executable, str(ADAPTIVE)], timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ALL OK") == 3


def test_fedprox_gradient_equals_autograd_of_the_penalised_loss():
    from hpcsynth.comm import SoloComm
    from hpcsynth.federated.registry import make_strategy

    model, data = tiny_tvae()
    mu = 0.7
    strategy = make_strategy("fedprox", {"mu": mu})
    strategy.setup(len(data), 30, SoloComm())
    hooked, penalised, params, anchor = hooked_and_autograd(
        strategy, model, data, lambda theta, anchor: mu / 2 * (theta - anchor).pow(2).sum())
    assert float((penalised - hooked).abs().max()) < 1e-6
    assert float((mu * (params - anchor)).abs().max()) > 1e-2  # the term is there to be missed


def test_fedopt_server_step_equals_a_hand_computed_adam_step_on_the_delta():
    import numpy as np
    import torch

    from hpcsynth.comm import SoloComm
    from hpcsynth.federated.registry import make_strategy
    from hpcsynth.federated.strategies import FedOpt

    lr, (b1, b2), tau = 0.03, FedOpt.betas, FedOpt.tau
    strategy = make_strategy("fedopt", {"server_lr": lr})
    strategy.setup(10, 10, SoloComm())
    params = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float32)
    initial = params.double().numpy().copy()
    theta, m, v = initial.copy(), 0.0, 0.0
    changes = ([0.1, -0.2, 0.0, 1e-3], [0.05, 0.3, -0.4, 1e-3])
    for r, local_change in enumerate(changes):  # one site: the average is its own model
        strategy.begin_round(params)
        params.add_(torch.tensor(local_change))
        strategy.aggregate(params, SoloComm())
        delta = np.array(local_change)
        m = b1 * m + (1 - b1) * delta
        v = b2 * v + (1 - b2) * delta ** 2
        theta = theta + lr * m / (np.sqrt(v) + tau)
        np.testing.assert_allclose(params.double().numpy(), theta, rtol=1e-6, atol=1e-7)
        if r == 0:  # closed form of the first step: m = 0.1 delta, sqrt(v) = 0.1 |delta|
            d = np.array(changes[0])
            np.testing.assert_allclose(params.double().numpy(), initial + lr * 0.1 * d / (0.1 * np.abs(d) + tau),
                                       rtol=1e-6, atol=1e-7)


def test_fedopt_averages_statistics_and_steps_only_what_gradient_descent_trains():
    """BatchNorm running moments live in the shared buffer but are no model: they take the plain average."""
    import torch

    from hpcsynth.comm import SoloComm
    from hpcsynth.federated.registry import make_strategy

    strategy = make_strategy("fedopt", {"server_lr": 0.03})
    strategy.setup(10, 10, SoloComm())
    params = torch.tensor([0.5, -1.0, 2.0, 1.0])
    trainable = torch.tensor([True, True, False, False])
    strategy.begin_round(params, trainable)
    params.add_(torch.tensor([0.1, -0.2, -0.7, 0.35]))
    strategy.aggregate(params, SoloComm())
    assert params[2:].tolist() == pytest.approx([1.3, 1.35])  # the average (one site: its own values)
    assert params[:2].tolist() == pytest.approx([0.5 + 0.03 * 0.1 * 0.1 / (0.01 + 1e-3),
                                                 -1.0 - 0.03 * 0.1 * 0.2 / (0.02 + 1e-3)], rel=1e-5)


@pytest.mark.mpi
@pytest.mark.slow
def test_fedprox_fedopt_and_centralized_run_end_to_end_with_secure_aggregation(mpirun, write_job, tmp_path):
    import h5py
    import numpy as np

    job = write_job({"federation": {"strategy": ["centralized", "fedprox", "fedopt"], "rounds": 2, "local_epochs": 1,
                                    "mu": 0.1, "server_lr": 0.01, "secure_aggregation": True},
                     "data.n_patients": 300})
    result = mpirun(3, [sys.executable, "-m", "hpcsynth.cli", "run", str(job)], timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("centralized", "fedprox", "fedopt"):
        with h5py.File(tmp_path / f"run-{name}.h5") as f:
            assert f.attrs["status"] == "complete"
            rounds = f["rounds"][()]
            assert len(rounds) == 2 and np.isfinite(rounds["loss"]).all()
            # masked uint64 buffers, 8 bytes per parameter: one per round, or one per step (centralized)
            reductions = rounds["steps"] if name == "centralized" else 1
            assert (rounds["bytes_reduced"] == 8 * f["checkpoint/params"].shape[1] * reductions).all()
            assert 0.0 < f["evaluation"].attrs["quality"] <= 1.0


FEDBN = Path(__file__).with_name("programs") / "fedbn_rounds.py"


@pytest.mark.mpi
def test_fedbn_averages_all_but_the_batchnorm_layers_with_and_without_secure_aggregation(mpirun):
    result = mpirun(3, [sys.executable, str(FEDBN)], timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("ALL OK") == 3
