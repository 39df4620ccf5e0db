"""Under mpiexec -n 3: mode-specific normalisation fitted by federated EM (each rank holds one site's rows)
equals the fit on the pooled rows, computed on rank 0; prints EQUAL."""
import numpy as np
import pandas as pd

from hpcsynth.comm import MPIComm, SoloComm
from hpcsynth.data.mode_specific import ModeSpecificTransform
from hpcsynth.data.schema import ColumnSpec


def site_values(k: int) -> pd.Series:
    """Three sites with different mixes of a bimodal lab value, some missing."""
    rng = np.random.default_rng(20 + k)
    n = (150, 400, 250)[k]
    low = rng.random(n) < (0.8, 0.5, 0.2)[k]
    x = np.where(low, rng.normal(60, 8, n), rng.normal(250, 40, n))
    x[rng.random(n) < 0.05] = np.nan
    return pd.Series(x)


def main() -> None:
    comm = MPIComm()
    spec = ColumnSpec("plt", "continuous")
    site = ModeSpecificTransform(spec).fit(site_values(comm.rank), comm)
    states = comm.allgather(site.state())
    if comm.rank != 0:
        return
    pooled = ModeSpecificTransform(spec).fit(pd.concat([site_values(k) for k in range(3)], ignore_index=True),
                                             SoloComm())
    want = pooled.state()
    for state in states:
        assert state["n"] == want["n"] and state["n_missing"] == want["n_missing"], (state, want)
        for key in ("means", "stds", "weights"):
            np.testing.assert_allclose(state[key], want[key], rtol=1e-7, err_msg=key)
    print(f"modes={pooled.n_modes} means={np.round(pooled.means_, 1).tolist()}", flush=True)
    print("EQUAL", flush=True)


if __name__ == "__main__":
    main()
