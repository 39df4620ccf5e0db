"""Under mpiexec -n 3, one program for every check (each mpiexec start costs seconds): FedProx, FedOpt and secure
aggregation through the real round loop and the real Allreduce.

prox0         FedProx with mu = 0 gives FedAvg's parameters bit for bit (Adam, 2 rounds of mini-batch steps),
              with mu = 1 it does not (so the comparison can fail); also with secure aggregation.
fedopt        FedOpt's model after 2 rounds equals a numpy FedAdam computed from every site's gathered local
              models; also with secure aggregation (within the amplified fixed-point error).
secure_sum    a masked weighted sum equals the plain one within 1.5 fixed-point steps, and the buffer this rank
              hands to MPI is uncorrelated with its values.
"""
import numpy as np
import pandas as pd
import torch

from hpcsynth.comm import MPIComm
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.federated.loop import train_rounds
from hpcsynth.federated.registry import make_strategy
from hpcsynth.federated.strategies import FedOpt
from hpcsynth.models import TVAE

SIZES = (40, 25, 55)


def site_rows(k: int) -> pd.DataFrame:
    rng = np.random.default_rng(10 + k)
    n = SIZES[k]
    return pd.DataFrame({"x": rng.normal(k, 1.0, n), "c": rng.choice(["a", "b"], n, p=[0.3 + 0.2 * k, 0.7 - 0.2 * k])})


def trained(name: str, options: dict, comm: MPIComm, transformer: TableTransformer, on_local=None) -> torch.Tensor:
    """The shared parameters after 2 rounds of `name` (Adam, batches of 10 rows); `on_local` sees every site's
    local model just before it is aggregated."""
    model = TVAE(hidden=[8], latent_dim=2, lr=0.01, seed=0).setup(transformer, stream=comm.rank)
    data = model.to_device(transformer.encode(site_rows(comm.rank)))
    strategy = make_strategy(name, options)
    if on_local is not None:
        aggregate = strategy.aggregate
        strategy.aggregate = lambda params, c: (on_local(params.clone()), aggregate(params, c))
    train_rounds(model, data, strategy, comm, rounds=2, local_epochs=1, batch_size=10)
    return model.shared_parameters().clone()


def check_secure_sum(comm: MPIComm) -> None:
    sent = []

    class Recording(MPIComm):
        def _allreduce(self, buffer, op):
            sent.append(buffer.copy())
            super()._allreduce(buffer, op)

    recording = Recording()
    strategy = make_strategy("fedavg", {"secure_aggregation": True})
    strategy.setup(SIZES[comm.rank], 10, recording)
    values = torch.from_numpy(np.random.default_rng(comm.rank).normal(size=100_000).astype(np.float32))
    every = np.stack(comm.allgather(values.double().numpy()))
    strategy.aggregate(values, recording)
    want = (np.array(SIZES, dtype=np.float64) / sum(SIZES)) @ every
    gap = np.abs(values.double().numpy() - want)
    # 3 roundings to the fixed point (half a step each), then one rounding of the sum to float32
    allowed = 1.5 * 2 ** -24 + 0.5 * np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    error = float(gap.max())
    masked = sent[-1]
    correlation = float(np.corrcoef(masked.view(np.int64).astype(np.float64), every[comm.rank])[0, 1])
    print(f"rank {comm.rank}: secure sum error {error / 2 ** -24:.2f} steps, masked buffer {masked.dtype}, "
          f"correlation {correlation:+.4f}")
    assert masked.dtype == np.uint64 and masked.size == values.numel()
    assert (gap <= allowed).all(), error
    assert abs(correlation) < 0.02, correlation


def check_prox0(comm: MPIComm, transformer: TableTransformer, secure: bool) -> None:
    fedavg = trained("fedavg", {"secure_aggregation": secure}, comm, transformer)
    prox0 = trained("fedprox", {"mu": 0.0, "secure_aggregation": secure}, comm, transformer)
    prox1 = trained("fedprox", {"mu": 1.0, "secure_aggregation": secure}, comm, transformer)
    apart = float((prox1 - fedavg).abs().max())
    print(f"rank {comm.rank}: secure={secure} FedProx mu=0 differs from FedAvg by "
          f"{float((prox0 - fedavg).abs().max()):.3e}, mu=1 by {apart:.3e}")
    assert torch.equal(prox0, fedavg), "FedProx with mu=0 is not FedAvg"
    assert apart > 1e-4, "mu=1 changed nothing"


def check_fedopt(comm: MPIComm, transformer: TableTransformer, secure: bool) -> None:
    initial = TVAE(hidden=[8], latent_dim=2, seed=0).setup(transformer).shared_parameters().double().numpy()
    local_models = []
    got = trained("fedopt", {"server_lr": 0.05, "secure_aggregation": secure}, comm, transformer,
                  on_local=local_models.append)
    weights = np.array(SIZES, dtype=np.float64) / sum(SIZES)
    theta, m, v = initial.copy(), 0.0, 0.0
    b1, b2 = FedOpt.betas
    for local in local_models:  # hand-computed FedAdam, round by round
        every = np.stack(comm.allgather(local.double().numpy()))
        delta = weights @ every - theta
        m = b1 * m + (1 - b1) * delta
        v = b2 * v + (1 - b2) * delta ** 2
        theta = theta + 0.05 * m / (np.sqrt(v) + FedOpt.tau)
    error = float(np.abs(got.double().numpy() - theta).max())
    moved = float(np.abs(theta - initial).max())
    print(f"rank {comm.rank}: secure={secure} FedOpt moved {moved:.3e}, error {error:.3e}")
    assert len(local_models) == 2 and moved > 0.05, "the server steps did not move the model"
    # float32 rounding of delta (and with masks the 1.5-step fixed-point error) is amplified up to lr / tau = 50x
    assert error < (1e-4 if secure else 1e-5), error


def main() -> None:
    comm = MPIComm()
    transformer = TableTransformer().fit(site_rows(comm.rank), comm)
    check_secure_sum(comm)
    for secure in (False, True):
        check_prox0(comm, transformer, secure)
        check_fedopt(comm, transformer, secure)
    print(f"rank {comm.rank}: ALL OK", flush=True)


if __name__ == "__main__":
    main()
