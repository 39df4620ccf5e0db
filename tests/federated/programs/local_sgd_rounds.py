"""Under mpiexec -n 3: `local_sgd` through the real round loop and the real Allreduce, Adam, sites of 40, 25 and
55 rows, a global batch of 24 rows and 2 local epochs per round, for 2 rounds. Checked against the written
formula, in numpy from every site's model and optimiser state just before each exchange:

- every site's batch is its share of the global batch (8, 5 and 11 rows) and every site takes the same steps: one
  pass over the 120 pooled rows (5 steps) per local epoch;
- a round exchanges once per local epoch (2 stretches of 5 steps);
- after each exchange, the parameters and both Adam moments are the size-weighted average of the sites';
- the bytes reduced per round are 2 exchanges of (parameters + 2 moments) in float32;
- with secure aggregation the same, within the masks' fixed-point rounding.
"""
import numpy as np
import pandas as pd
from every_rank import run_on_every_rank

from hpcsynth.comm import MPIComm
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.federated.loop import train_rounds
from hpcsynth.federated.registry import make_strategy
from hpcsynth.models import TVAE

SIZES = (40, 25, 55)
BATCH = 24
WEIGHTS = np.array(SIZES, dtype=np.float64) / sum(SIZES)


def site_rows(k: int) -> pd.DataFrame:
    rng = np.random.default_rng(20 + k)
    n = SIZES[k]
    return pd.DataFrame({"x": rng.normal(k, 1.0, n), "c": rng.choice(["a", "b"], n, p=[0.2 + 0.3 * k, 0.8 - 0.3 * k])})


def state(model: TVAE) -> np.ndarray:
    """Parameters, then the moments, as one float64 vector."""
    return np.concatenate([t.double().numpy().ravel() for t in (model.shared_parameters(), *model.optimizer_moments())])


def check(comm: MPIComm, transformer: TableTransformer, secure: bool) -> None:
    model = TVAE(hidden=[8], latent_dim=2, lr=0.01, seed=0).setup(transformer, stream=comm.rank)
    data = model.to_device(transformer.encode(site_rows(comm.rank)))
    strategy = make_strategy("local_sgd", {"secure_aggregation": secure})
    strategy.attach(model, data, comm)
    before, after, batches = [], [], []
    aggregate = strategy.aggregate
    next_batch = model._next_batch

    def recording_aggregate(params, c):
        before.append(np.stack(comm.allgather(state(model))))
        aggregate(params, c)
        after.append(state(model))

    def recording_batch(rows, size):
        batches.append(size)
        return next_batch(rows, size)

    strategy.aggregate, model._next_batch = recording_aggregate, recording_batch
    records = train_rounds(model, data, strategy, comm, rounds=2, local_epochs=2, batch_size=BATCH)
    assert strategy.batch_rows == round(BATCH * SIZES[comm.rank] / sum(SIZES)), strategy.batch_rows
    assert batches == [strategy.batch_rows] * 20, batches  # 2 rounds x 2 epochs x 5 steps, the same on every site
    assert len(before) == 4  # one exchange per local epoch
    n_params = model.shared_parameters().numel()
    width = state(model).size
    assert width == 3 * n_params  # Adam: the parameters and two moments
    tolerance = 1e-5 if secure else 1e-6  # relative: Adam's second moments reach 1e4 here, float32 sums
    for k, (local, averaged) in enumerate(zip(before, after)):
        want = WEIGHTS @ local
        error = float((np.abs(averaged - want) / np.maximum(np.abs(want), 1.0)).max())
        assert error < tolerance, f"exchange {k}: max relative difference {error:.3e}, secure {secure}"
        assert np.abs(local[0] - local[2]).max() > 1e-4  # the sites had drifted apart
    assert [r.bytes_reduced for r in records] == [2 * (8 if secure else 4) * width] * 2, records
    assert [r.steps for r in records] == [10, 10]
    print(f"rank {comm.rank}: local_sgd secure={secure} OK", flush=True)


def main(comm: MPIComm) -> None:
    transformer = TableTransformer().fit(site_rows(comm.rank), comm)
    for secure in (False, True):
        check(comm, transformer, secure)
    print(f"rank {comm.rank}: ALL OK", flush=True)


if __name__ == "__main__":
    run_on_every_rank(main)
