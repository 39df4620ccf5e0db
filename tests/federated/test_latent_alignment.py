"""Latent alignment under real mpiexec: one decoder, site encoders, one pooled latent target and prior."""
import sys
from pathlib import Path

import pytest

from hpcsynth.federated.latent_alignment import LatentAlignment
from hpcsynth.federated.registry import make_strategy
from hpcsynth.models.bayesnet import BayesianNetwork

PROGRAM = Path(__file__).with_name("programs") / "latent_alignment_round.py"


def test_registered_and_refuses_models_without_a_latent_space():
    strategy = make_strategy("latent_alignment", {"alignment_weight": 2.0, "mu": 0.5})
    assert isinstance(strategy, LatentAlignment) and strategy.alignment_weight == 2.0
    with pytest.raises(ValueError, match="latent_alignment needs a VAE family"):
        strategy.attach(BayesianNetwork(), None, None)


@pytest.mark.mpi
def test_decoders_are_shared_encoders_stay_and_latents_align(mpirun):
    result = mpirun(3, [sys.executable, str(PROGRAM)], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ALIGNED" in result.stdout
