"""Under mpiexec -n 3: one full-batch SGD step per site, aggregated by the real strategy, against one pooled
full-batch step computed on rank 0 from the same rows and the same reparameterisation noise."""
import sys

import numpy as np
import pandas as pd
import torch

from hpcsynth.comm import MPIComm
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.federated.loop import train_rounds
from hpcsynth.federated.registry import make_strategy
from hpcsynth.models import TVAE

SIZES = (40, 25, 55)
LATENT = 4


def site_rows(k: int) -> pd.DataFrame:
    rng = np.random.default_rng(10 + k)
    n = SIZES[k]
    return pd.DataFrame({"x": rng.normal(k, 1.0, n), "y": rng.gamma(2.0 + k, 1.0, n),
                         "c": rng.choice(["a", "b", "c"], n, p=[0.6 - 0.2 * k, 0.3, 0.1 + 0.2 * k])})


def noise(k: int) -> torch.Tensor:
    return torch.randn((SIZES[k], LATENT), generator=torch.Generator().manual_seed(100 + k))


def model(transformer: TableTransformer, stream: int) -> TVAE:
    m = TVAE(hidden=[16, 16], latent_dim=LATENT, optimizer="sgd", lr=0.05, weight_decay=1e-4, seed=0)
    return m.setup(transformer, stream=stream)


def main(strategy_name: str) -> None:
    comm = MPIComm()
    local = site_rows(comm.rank)
    transformer = TableTransformer().fit(local, comm)
    site_model = model(transformer, comm.rank)
    initial = site_model.shared_parameters().clone()
    site_model.train_generator_ = torch.Generator().manual_seed(100 + comm.rank)
    data = site_model.to_device(transformer.encode(local))
    train_rounds(site_model, data, make_strategy(strategy_name), comm, rounds=1, local_epochs=1, batch_size=10**6)
    if comm.rank != 0:
        return
    reference = model(transformer, 0)
    pooled = reference.to_device(transformer.encode(pd.concat([site_rows(k) for k in range(3)], ignore_index=True)))
    reference.flat_.zero_grad()
    reference.loss(pooled, torch.cat([noise(k) for k in range(3)])).backward()
    reference.optimizer_.step()
    reference._after_step()
    got, want = site_model.shared_parameters(), reference.shared_parameters()
    moved = float((want - initial).abs().max())
    error = float((got - want).abs().max())
    print(f"moved={moved:.3e} error={error:.3e}", flush=True)
    assert moved > 1e-3, "the pooled step did not move the parameters"
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), f"max difference {error}"
    print("EQUAL", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
