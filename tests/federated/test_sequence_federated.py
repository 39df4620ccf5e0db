"""SequenceVAE federated, under real mpiexec -n 3 (`programs/sequence_rounds.py`): the patient-row transform
fitted from merged statistics equals the pooled fit; centralized and fedavg through the project's round loop
lower the loss and leave every rank with the same parameters and a sampler that honours conditions; isolated
keeps site models and latent_alignment site encoders with one decoder; fedavg under DP-SGD spends at most the
budget by the project's accountant."""
import sys
from pathlib import Path

import pytest

PROGRAM = Path(__file__).with_name("programs") / "sequence_rounds.py"


@pytest.mark.mpi
def test_every_round_loop_strategy_and_private_fedavg_train_the_sequence_vae_on_three_sites(mpirun):
    result = mpirun(3, [sys.executable, str(PROGRAM)], timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("merged fit equals the pooled fit") == 3
    assert result.stdout.count("ALL OK") == 3
