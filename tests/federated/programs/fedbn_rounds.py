"""Under mpiexec -n 3: two rounds of FedBN on a small CTGAN through the real round loop and Allreduce, plain and
with secure aggregation. Every site's local model just before aggregation is gathered, and after each round the
parameters must be, in float64: the size-weighted mean of the local models outside the BatchNorm layers, and the
site's own local values inside them (affine weights and running moments)."""
import numpy as np
import pandas as pd
import torch
from every_rank import run_on_every_rank

from hpcsynth.comm import MPIComm
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.federated.loop import train_rounds
from hpcsynth.federated.registry import make_strategy
from hpcsynth.models import CTGAN

SIZES = (40, 25, 55)
WEIGHTS = np.array(SIZES, dtype=np.float64) / sum(SIZES)


def site_rows(k: int) -> pd.DataFrame:
    rng = np.random.default_rng(10 + k)
    n = SIZES[k]
    return pd.DataFrame({"x": rng.normal(k, 1.0, n), "c": rng.choice(["a", "b"], n, p=[0.3 + 0.2 * k, 0.7 - 0.2 * k])})


def check(comm: MPIComm, transformer: TableTransformer, secure: bool) -> None:
    model = CTGAN(batch_size=10, pac=5, embedding_dim=4, generator_dim=[8, 8], discriminator_dim=[8], seed=0,
                  compile="off", precision="fp32").setup(transformer, stream=comm.rank)
    data = model.to_device(transformer.encode(site_rows(comm.rank)))
    strategy = make_strategy("fedbn", {"secure_aggregation": secure})
    strategy.attach(model, data, comm)
    local = model.normalisation_mask().numpy()
    batchnorm = sum(p.numel() for m in model.generator_.modules() if isinstance(m, torch.nn.BatchNorm1d)
                    for p in m.parameters())
    assert local.sum() == batchnorm == 2 * 4 * 8, (local.sum(), batchnorm)  # weight, bias, mean, var of 2 x 8
    aggregate, rounds = strategy.aggregate, []

    def recording_aggregate(params, c):
        before = np.stack(comm.allgather(params.double().numpy().copy()))
        aggregate(params, c)
        rounds.append((before, params.double().numpy().copy()))

    strategy.aggregate = recording_aggregate
    train_rounds(model, data, strategy, comm, rounds=2, local_epochs=1, batch_size=10)
    assert len(rounds) == 2
    for before, after in rounds:
        mean = (WEIGHTS[:, None] * before).sum(axis=0)
        assert np.abs(after[~local] - mean[~local]).max() < 1e-5, np.abs(after[~local] - mean[~local]).max()
        assert np.array_equal(after[local], before[comm.rank][local])
        assert not np.allclose(before[0][local], before[1][local])  # the sites' own statistics differ


def main(comm: MPIComm) -> None:
    frame = pd.concat([site_rows(k) for k in range(3)])
    transformer = TableTransformer().fit(frame)
    for secure in (False, True):
        check(comm, transformer, secure)
    print(f"rank {comm.rank}: ALL OK", flush=True)


if __name__ == "__main__":
    run_on_every_rank(main)
