"""The client-drift strategies (hpcsynth.federated.drift): SCAFFOLD, FedDyn and FedAvgM.

Under real mpiexec, two rounds of each equal their written formulas recomputed in numpy from every site's local
model. In one process, the gradient corrections, the statistics entries, the checkpoint round trip, and what
config validation accepts and refuses."""
import sys
from pathlib import Path

import pytest
import torch
from gradient_support import hooked_and_autograd, tiny_tvae

from hpcsynth.comm import SoloComm
from hpcsynth.config import ConfigError, FederationConfig, from_dict
from hpcsynth.federated.drift import FedAvgM, FedDyn, Scaffold
from hpcsynth.federated.registry import STRATEGIES, make_strategy
from hpcsynth.io.checkpoint import pack_state, unpack_state

PROGRAM = Path(__file__).with_name("programs") / "drift_rounds.py"
DRIFT = ["scaffold", "feddyn", "fedavgm"]


@pytest.mark.mpi
def test_two_rounds_of_each_equal_their_formulas_from_every_sites_local_model(mpirun):
    result = mpirun(3, [sys.executable, str(PROGRAM)], timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("ALL OK") == 3


def _round(strategy, params: torch.Tensor, change: list[float], trainable=None, steps: int = 2) -> None:
    """One round on one site: `steps` zero gradients through the hook, then the local model moves by `change`."""
    strategy.begin_round(params, trainable)
    for _ in range(steps):
        strategy.on_gradients(torch.zeros_like(params), 10, SoloComm())
    with torch.no_grad():
        params.add_(torch.tensor(change))
    strategy.aggregate(params, SoloComm())


def _started(name: str, options: dict | None = None, model=None):
    strategy = make_strategy(name, options)
    strategy.setup(10, 10, SoloComm())
    if name == "scaffold":
        strategy.attach(model if model is not None else _Lr(0.1), None, SoloComm())
    return strategy


class _Lr:
    one_lr = True

    def __init__(self, lr: float) -> None:
        self.lr = lr


def test_registered_with_their_config_keys_and_declarations():
    options = vars(FederationConfig(feddyn_alpha=0.3, server_momentum=0.5, server_lr_momentum=2.0, server_lr=0.07))
    feddyn, fedavgm = make_strategy("feddyn", options), make_strategy("fedavgm", options)
    assert isinstance(make_strategy("scaffold", options), Scaffold)
    assert isinstance(feddyn, FedDyn) and feddyn.alpha == 0.3
    assert isinstance(fedavgm, FedAvgM) and (fedavgm.momentum, fedavgm.server_lr) == (0.5, 2.0)  # not fedopt's
    defaults = FederationConfig()
    assert (defaults.feddyn_alpha, defaults.server_momentum, defaults.server_lr_momentum) == (0.01, 0.9, 1.0)
    for name in DRIFT:
        cls = STRATEGIES[name]
        assert cls.trains == frozenset({"gradients"}) and cls.supports_secure_aggregation
        assert cls.shares_model and cls.pools_prior and not cls.releases_per_site
        assert cls.dp_sgd_gap == "" and cls.site_parallel_gap == "" and not cls.needs_latent
        assert cls.needs_lr == (name == "scaffold")


def test_scaffold_needs_the_models_one_learning_rate():
    from hpcsynth.models import CTGAN

    with pytest.raises(ValueError, match="scaffold needs the model's one learning rate lr, which CTGAN"):
        make_strategy("scaffold").attach(CTGAN(), None, SoloComm())
    strategy = make_strategy("scaffold")
    strategy.setup(10, 10, SoloComm())
    params = torch.zeros(3)
    strategy.begin_round(params)
    with pytest.raises(RuntimeError, match="attach"):
        strategy.aggregate(params, SoloComm())


def test_scaffold_corrects_each_gradient_by_c_minus_c_k_on_trained_entries_only():
    strategy = _started("scaffold")
    params = torch.tensor([0.5, -1.0, 2.0, 1.0])
    trainable = torch.tensor([True, False, True, False])
    # one site: c_k+ = c_k - c + (x - y) / (K lr) = -change / (2 * 0.1), and c moves by the same change
    _round(strategy, params, [0.1, 0.2, -0.4, 0.3], trainable)
    assert params.tolist() == pytest.approx([0.6, -0.8, 1.6, 1.3])  # one site: its own model, statistics as well
    assert strategy.state()["c_local"].tolist() == pytest.approx([-0.5, 2.0])
    assert strategy.state()["c"].tolist() == pytest.approx([-0.5, 2.0])
    # make c and c_k differ (a one-site consortium keeps them equal), then look at one corrected gradient
    strategy.c = torch.tensor([1.0, -2.0])
    strategy.begin_round(params, trainable)
    grad = torch.tensor([0.25, 0.5, 0.75, 1.0])
    strategy.on_gradients(grad, 10, SoloComm())
    assert grad.tolist() == pytest.approx([0.25 + 1.5, 0.5, 0.75 - 4.0, 1.0])


def test_feddyn_gradient_equals_autograd_of_the_regularised_loss():
    model, data = tiny_tvae(optimizer="sgd", lr=0.01)
    alpha = 0.7
    strategy = make_strategy("feddyn", {"feddyn_alpha": alpha})
    strategy.setup(len(data), 30, SoloComm())
    previous = torch.randn(model.shared_parameters().shape, generator=torch.Generator().manual_seed(3))
    strategy.grad_local = previous.clone()
    def term(theta, anchor):
        return -(previous * theta).sum() + alpha / 2 * (theta - anchor).pow(2).sum()

    hooked, regularised, params, anchor = hooked_and_autograd(strategy, model, data, term)
    assert float((regularised - hooked).abs().max()) < 1e-5
    assert float((alpha * (params - anchor) - previous).abs().max()) > 1e-2  # the terms are there to be missed


def test_feddyn_and_fedavgm_step_the_trained_entries_and_average_the_statistics():
    trainable = torch.tensor([True, True, False])
    change = [0.1, -0.2, 0.3]
    feddyn = _started("feddyn", {"feddyn_alpha": 0.5})
    params = torch.tensor([1.0, 2.0, 3.0])
    grad = torch.tensor([1.0, 1.0, 1.0])
    feddyn.begin_round(params, trainable)
    with torch.no_grad():
        params.add_(torch.tensor(change))
    feddyn.on_gradients(grad, 10, SoloComm())
    assert grad.tolist() == pytest.approx([1.05, 0.9, 1.0])  # alpha (theta - theta_global) on trained entries
    feddyn.aggregate(params, SoloComm())
    # grad_k = -alpha * change, h = -alpha * change, theta = avg - h / alpha = start + 2 change; statistics: avg
    assert feddyn.state()["grad_local"].tolist() == pytest.approx([-0.05, 0.1])
    assert feddyn.state()["h"].tolist() == pytest.approx([-0.05, 0.1])
    assert params.tolist() == pytest.approx([1.2, 1.6, 3.3])

    fedavgm = _started("fedavgm", {"server_momentum": 0.5, "server_lr_momentum": 2.0})
    params = torch.tensor([1.0, 2.0, 3.0])
    _round(fedavgm, params, change, trainable)
    assert params.tolist() == pytest.approx([1.2, 1.6, 3.3])  # m = change, theta + 2 m; statistics: avg
    _round(fedavgm, params, change, trainable)
    assert fedavgm.state()["m"].tolist() == pytest.approx([0.15, -0.3])  # 0.5 m + change
    assert params.tolist() == pytest.approx([1.5, 1.0, 3.6])


@pytest.mark.parametrize("name", DRIFT)
def test_the_state_survives_a_checkpoint_and_the_resumed_round_is_identical(name):
    """Round 1, checkpoint (the job's pack_state / unpack_state), then round 2 on the original and on a fresh
    strategy that loaded the checkpoint: the same parameters and the same state."""
    trainable = torch.tensor([True, True, False, True])
    original = _started(name)
    params = torch.tensor([0.5, -1.0, 2.0, 1.0])
    _round(original, params, [0.1, -0.2, 0.3, 0.05], trainable)
    model_state, saved = unpack_state(pack_state(b"model", original.state()))
    assert model_state == b"model" and set(saved) == set(original.state())
    assert all(torch.equal(saved[k], original.state()[k]) and original.state()[k].abs().max() > 0 for k in saved)
    resumed = _started(name)
    resumed.load_state(saved)
    again = params.clone()
    _round(original, params, [-0.3, 0.1, 0.2, 0.4], trainable)
    _round(resumed, again, [-0.3, 0.1, 0.2, 0.4], trainable)
    assert torch.equal(params, again)
    assert all(torch.equal(original.state()[k], resumed.state()[k]) for k in saved)
    if name != "scaffold":  # the state matters: without it, round 2 differs (one site keeps SCAFFOLD's c = c_k)
        other = torch.tensor([0.5, -1.0, 2.0, 1.0])
        _round(_started(name), other, [0.1, -0.2, 0.3, 0.05], trainable)
        _round(_started(name), other, [-0.3, 0.1, 0.2, 0.4], trainable)
        assert not torch.allclose(other, params)


# -- config validation reads the declarations ------------------------------------------------------------------
def _job(**federation):
    return {"data": {"builtin": "mds"}, "model": {}, "federation": federation}


@pytest.mark.parametrize("name", DRIFT)
def test_the_config_accepts_them_with_privacy_secure_aggregation_and_ranks_per_site(name):
    for model in ("tvae", "vae_bgm", "ddpm"):
        job = _job(strategy=name)
        job["model"] = {"name": model}
        assert from_dict(job).strategies == [name]
    for options in ({"secure_aggregation": True}, {"ranks_per_site": 2}):
        assert from_dict(_job(strategy=name, **options)).strategies == [name]
    private = {**_job(strategy=name), "privacy": {"epsilon": 3.0}}
    assert from_dict(private).privacy.epsilon == 3.0


@pytest.mark.parametrize("name, accepted", [("scaffold", False), ("feddyn", True), ("fedavgm", True)])
def test_ctgan_is_refused_only_by_scaffold_and_bayesnet_by_all(name, accepted):
    job = _job(strategy=name)
    job["model"] = {"name": "ctgan"}
    if accepted:
        assert from_dict(job).strategies == [name]
    else:
        with pytest.raises(ConfigError, match=r"^job.yaml: federation.strategy: scaffold needs the model's one "
                                              r"learning rate lr, which model.name ctgan .*tvae"):
            from_dict(job, source="job.yaml")
    job["model"] = {"name": "bayesnet"}
    with pytest.raises(ConfigError, match=rf"^job.yaml: federation.strategy: {name} does not apply .*bayesnet"):
        from_dict(job, source="job.yaml")


@pytest.mark.parametrize("key, value", [("feddyn_alpha", 0.0), ("feddyn_alpha", -1.0), ("server_momentum", 1.0),
                                        ("server_momentum", -0.1), ("server_lr_momentum", 0.0)])
def test_out_of_range_values_are_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"^job.yaml: federation.{key}: must be"):
        from_dict(_job(**{key: value}), source="job.yaml")
