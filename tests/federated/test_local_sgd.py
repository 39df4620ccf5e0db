"""Local SGD (hpcsynth.federated.local_sgd): global-batch shares, an exchange per local epoch, Adam's moments
averaged with the parameters.

Under real mpiexec, two rounds equal the written formula recomputed in numpy from every site's model and
optimiser state before each exchange (`programs/local_sgd_rounds.py`). In one process, the declarations and what
config validation accepts and refuses."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from gradient_support import tiny_tvae

from hpcsynth.config import ConfigError, from_dict
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.federated.local_sgd import LocalSGD
from hpcsynth.federated.loop import _stretches
from hpcsynth.federated.registry import STRATEGIES
from hpcsynth.models import CTGAN

PROGRAM = Path(__file__).with_name("programs") / "local_sgd_rounds.py"


@pytest.mark.mpi
def test_two_rounds_equal_the_size_weighted_average_of_parameters_and_moments_at_every_exchange(mpirun):
    result = mpirun(3, [sys.executable, str(PROGRAM)], timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("ALL OK") == 3


def test_declared_as_a_shared_model_trained_by_gradients_that_refuses_sites_of_several_ranks():
    assert STRATEGIES["local_sgd"] is LocalSGD
    assert LocalSGD.trains == frozenset({"gradients"}) and LocalSGD.supports_secure_aggregation
    assert LocalSGD.shares_model and LocalSGD.pools_prior and not LocalSGD.releases_per_site
    assert LocalSGD.dp_sgd_gap == "" and LocalSGD.site_parallel_gap and not LocalSGD.needs_latent
    assert LocalSGD().exchanges_per_round(7) == 7


def test_a_round_splits_its_steps_into_near_equal_stretches():
    assert _stretches(10, 1) == [10]
    assert _stretches(10, 3) == [4, 3, 3]
    assert _stretches(2, 5) == [1, 1]


def _job(**federation) -> dict:
    return {"data": {"builtin": "mds"}, "model": {"name": "tvae"},
            "federation": {"strategy": "local_sgd", "rounds": 2, **federation}}


def test_the_config_accepts_every_gradient_family_privacy_and_secure_aggregation():
    for model in ("tvae", "ctgan", "vae_bgm", "ddpm"):
        job = _job()
        job["model"] = {"name": model}
        assert from_dict(job).strategies == ["local_sgd"]
    assert from_dict(_job(secure_aggregation=True)).strategies == ["local_sgd"]
    assert from_dict({**_job(), "privacy": {"epsilon": 3.0}}).privacy.epsilon == 3.0
    with pytest.raises(ConfigError, match=r"^job.yaml: .*local_sgd.*global batch"):
        from_dict(_job(ranks_per_site=2), source="job.yaml")
    job = _job()
    job["model"] = {"name": "bayesnet"}
    with pytest.raises(ConfigError, match=r"^job.yaml: federation.strategy: local_sgd does not apply .*bayesnet"):
        from_dict(job, source="job.yaml")


def test_the_moments_are_every_optimisers_adam_state_and_none_under_sgd():
    model, data = tiny_tvae(optimizer="sgd", lr=0.01)  # plain SGD: no state to average
    model.local_update(data, 2, 10)
    assert model.optimizer_moments() == []
    frame = pd.DataFrame({"x": np.random.default_rng(0).normal(size=40), "c": ["a", "b"] * 20})
    transformer = TableTransformer().fit(frame)
    ctgan = CTGAN(generator_dim=[8], discriminator_dim=[8], embedding_dim=4, batch_size=10, pac=1).setup(transformer)
    ctgan.local_update(ctgan.to_device(transformer.encode(frame)), 2, 10)
    moments = ctgan.optimizer_moments()
    size = ctgan.shared_parameters().numel() - int((~ctgan.trainable_mask()).sum())
    assert sum(m.numel() for m in moments) == 2 * size  # both networks' Adam, two moments per trained entry
    assert all(isinstance(m, torch.Tensor) and m.abs().sum() > 0 for m in moments[:2])
