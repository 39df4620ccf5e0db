"""Under mpiexec -n 3: SequenceVAE through the real round loop and the real Allreduce, three sites of 70, 50 and
90 patients (each site's patients only; keys never shared between sites).

- the patient-row transform fitted from merged statistics equals the one fitted on the pooled patients (T_max,
  every part's state) and encodes every site's patients as the pooled fit does;
- centralized and fedavg, 6 rounds of 2 local epochs: the loss falls, every rank ends with the same parameters,
  and every rank samples sequences that meet a condition on the context;
- isolated: site parameters of their own; latent_alignment: site encoders, one averaged decoder;
- fedavg with DP-SGD (the project's accountant, calibrated to epsilon 3 over the planned steps): every site
  spends at most its budget (and most of it), the sites still end with equal parameters, and the loss stays
  finite.
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from every_rank import run_on_every_rank

from hpcsynth.comm import MPIComm
from hpcsynth.data.sequence_transformer import SequenceTransformer
from hpcsynth.data.sequences import Sequences
from hpcsynth.federated.loop import train_rounds
from hpcsynth.federated.privacy import make_dpsgd
from hpcsynth.federated.registry import make_strategy
from hpcsynth.models import SequenceVAE

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))
from sequence_support import cohort  # noqa: E402

SIZES = (70, 50, 90)
SMALL = {"batch_size": 60, "hidden": [32], "latent_dim": 8, "gru_dim": 16, "lr": 3e-3, "max_visits": 10,
         "compile": "off", "seed": 0}
ROUNDS, LOCAL_EPOCHS, EPSILON = 6, 2, 3.0


def site_sequences(k: int) -> Sequences:
    return cohort(SIZES[k], seed=40 + k, first_key=1000 * k)


def pooled() -> Sequences:
    """Every site's patients in one process: the reference the merged fit must equal (the test builds it; no
    rank receives another's rows)."""
    parts = [site_sequences(k) for k in range(len(SIZES))]
    return Sequences(pd.concat([p.context for p in parts], ignore_index=True),
                     pd.concat([p.visits for p in parts], ignore_index=True), parts[0].key, parts[0].index)


def check_merged_fit(comm: MPIComm, mine: Sequences) -> SequenceTransformer:
    merged = SequenceTransformer(max_visits=SMALL["max_visits"]).fit(mine, comm)
    reference = SequenceTransformer(max_visits=SMALL["max_visits"]).fit(pooled())
    assert merged.t_max_ == reference.t_max_, (merged.t_max_, reference.t_max_)
    np.testing.assert_array_equal(merged.length_counts_, reference.length_counts_)
    for part in ("context_", "visit_", "interval_"):
        assert getattr(merged, part).state() == getattr(reference, part).state(), part
    np.testing.assert_array_equal(merged.encode(mine), reference.encode(mine))
    print(f"rank {comm.rank}: merged fit equals the pooled fit", flush=True)
    return merged


def same_on_every_rank(comm: MPIComm, params: torch.Tensor) -> float:
    """The largest difference between this rank's parameters and any other's."""
    gathered = comm.allgather(params.detach().numpy().copy())
    return max(float(np.abs(g - gathered[0]).max()) for g in gathered)


def train(comm: MPIComm, transformer: SequenceTransformer, mine: Sequences, name: str, private: bool):
    model = SequenceVAE(**SMALL).setup(transformer, stream=comm.rank)
    data = model.to_device(transformer.encode(mine))
    strategy = make_strategy(name, {})
    if private:
        strategy.setup(len(data), SMALL["batch_size"], comm)
        steps = ROUNDS * strategy.steps_per_round(LOCAL_EPOCHS)
        model.make_private(make_dpsgd(EPSILON, 1e-5, 1.0, "rdp", strategy.batch_rows / len(data), steps,
                                      (SMALL["seed"], comm.rank)))
    strategy.attach(model, data, comm)
    records = train_rounds(model, data, strategy, comm, ROUNDS, LOCAL_EPOCHS, SMALL["batch_size"])
    strategy.finish(model, data, comm)
    return model, records


def check_strategy(comm: MPIComm, transformer: SequenceTransformer, mine: Sequences, name: str) -> None:
    model, records = train(comm, transformer, mine, name, private=False)
    losses = [r.loss for r in records]
    assert len(records) == ROUNDS and losses[-1] < 0.8 * losses[0], (name, losses)
    spread = same_on_every_rank(comm, model.shared_parameters())
    assert spread == 0.0 if name == "fedavg" else spread < 1e-5, (name, spread)
    sample = model.sample(40, conditions={"arm": "B"})
    assert (sample.context["arm"] == "B").all() and sample.n_patients == 40
    assert sample.lengths().max() <= transformer.t_max_
    print(f"rank {comm.rank}: {name} losses {losses[0]:.1f} -> {losses[-1]:.1f}, parameters equal", flush=True)


def check_site_models(comm: MPIComm, transformer: SequenceTransformer, mine: Sequences) -> None:
    """isolated: each site trains alone (its parameters its own); latent_alignment: the decoders are averaged,
    the encoders (first in the flat buffer) stay per site, and the sampling prior is the pooled latent Gaussian."""
    for name in ("isolated", "latent_alignment"):
        model, records = train(comm, transformer, mine, name, private=False)
        losses = [r.loss for r in records]
        assert losses[-1] < 0.8 * losses[0], (name, losses)
        encoder = sum(p.numel() for p in model.encoder_.parameters())
        params = model.shared_parameters()
        assert same_on_every_rank(comm, params[:encoder]) > 1e-3, name
        decoders = same_on_every_rank(comm, params[encoder:])
        assert decoders > 1e-3 if name == "isolated" else decoders < 1e-5, (name, decoders)
        assert model.sample(20).n_patients == 20
        print(f"rank {comm.rank}: {name} losses {losses[0]:.1f} -> {losses[-1]:.1f}", flush=True)
    assert model.latent_target_ is not None


def check_private(comm: MPIComm, transformer: SequenceTransformer, mine: Sequences) -> None:
    model, records = train(comm, transformer, mine, "fedavg", private=True)
    spent = model.privacy_.accountant.epsilon()
    every = comm.allgather(spent)
    assert all(0.5 * EPSILON < e <= EPSILON * (1 + 1e-6) for e in every), every
    assert records[-1].epsilon == max(every) and len(records) == ROUNDS
    assert all(np.isfinite(r.loss) for r in records), [r.loss for r in records]
    assert same_on_every_rank(comm, model.shared_parameters()) == 0.0
    assert model.sample(20).n_patients == 20
    print(f"rank {comm.rank}: private fedavg spent epsilon {spent:.3f} of {EPSILON}", flush=True)


def main(comm: MPIComm) -> None:
    torch.set_num_threads(1)
    mine = site_sequences(comm.rank)
    transformer = check_merged_fit(comm, mine)
    for name in ("centralized", "fedavg"):
        check_strategy(comm, transformer, mine, name)
    check_site_models(comm, transformer, mine)
    check_private(comm, transformer, mine)
    print(f"rank {comm.rank}: ALL OK", flush=True)


if __name__ == "__main__":
    run_on_every_rank(main)
