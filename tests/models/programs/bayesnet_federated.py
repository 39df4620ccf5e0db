"""Under mpiexec -n 3: a Bayesian network fitted across the sites (counts summed by Allreduce) against one
fitted in one process on the pooled rows, on rank 0. Prints EQUAL when structure, counts, tables and samples
are identical bit for bit; `isolated` fits each site alone and must differ."""
import sys

import numpy as np
import pandas as pd

from hpcsynth.comm import MPIComm, SoloComm
from hpcsynth.models import BayesianNetwork

SIZES = (400, 250, 550)


def site_rows(k: int) -> pd.DataFrame:
    """Sites that differ in case mix: a chain a -> b -> x with site-dependent level frequencies."""
    rng = np.random.default_rng(20 + k)
    n = SIZES[k]
    a = rng.choice(["p", "q", "r"], n, p=[0.6 - 0.2 * k, 0.3, 0.1 + 0.2 * k])
    b = np.where(rng.uniform(size=n) < 0.8, a, rng.choice(["p", "q", "r"], n))
    x = rng.normal(0.0, 1.0, n) + (b == "q") * 2.0 + (b == "r") * 4.0
    y = np.where(rng.uniform(size=n) < 0.1, np.nan, rng.gamma(2.0 + k, 1.0, n))
    return pd.DataFrame({"a": a, "b": b, "x": x, "y": y, "flag": (x > 3).astype(float)})


def main(structure: str, strategy: str) -> None:
    comm = MPIComm()
    local = site_rows(comm.rank)
    options = dict(structure=structure, n_bins=6, seed=4)
    model = BayesianNetwork(**options)
    transformer = model.make_transformer().fit(local, comm)
    model.setup(transformer, stream=comm.rank)
    model.fit_counts(transformer.encode(local), comm if strategy == "shared" else SoloComm())
    mine = model.sample(300)
    if comm.rank != 0:
        return
    pooled = BayesianNetwork(**options).fit(pd.concat([site_rows(k) for k in range(3)], ignore_index=True))
    print("parents", model.parents_, pooled.parents_, flush=True)
    assert model.parents_ == pooled.parents_, "structures differ"
    for i, (got, want) in enumerate(zip(model.counts_, pooled.counts_)):
        assert np.array_equal(got, want), f"counts of column {i} differ"
    for got, want in zip(model.cpts_, pooled.cpts_):
        assert np.array_equal(got, want)
    pd.testing.assert_frame_equal(mine, pooled.sample(300))
    print("EQUAL", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
