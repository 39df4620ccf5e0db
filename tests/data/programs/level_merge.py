"""Under mpiexec -n 3: declared numeric categories keep their levels through the federated level merge. Site 0
stores the codes as int64, site 1 as float64 with gaps, site 2 as text; every rank ends with the pooled fit's
one set of levels (no 2 beside 2.0 or "2") and decodes only those levels, in the merged dtype; prints EQUAL."""
import json

import numpy as np
import pandas as pd

from hpcsynth.comm import MPIComm, SoloComm
from hpcsynth.data.transformer import TableTransformer


def site_rows(k: int) -> pd.DataFrame:
    """`grp` coded 1..10 (stored three ways), `yr` coded 1995..2003 (int64, or float64 with gaps at site 1)."""
    rng = np.random.default_rng(40 + k)
    n = 120
    grp = pd.Series(rng.integers(1 + 3 * k, 5 + 3 * k, n))  # each site sees a few levels of its own
    yr = pd.Series(rng.integers(1995, 2004, n))
    if k == 1:
        grp, yr = grp.astype(float).mask(rng.random(n) < 0.1), yr.astype(float).mask(rng.random(n) < 0.1)
    if k == 2:
        grp = grp.astype(str)
    return pd.DataFrame({"grp": grp, "yr": yr, "age": rng.normal(70, 8, n)})


def _fitted(state: str) -> list:
    """Every column's fitted transform state (labels, counts, histograms), without the dtypes: pooled rows are
    float64 where one site's are, while the sites' merge keeps the integer codes integers (Int64)."""
    return [column["state"] for column in json.loads(state)["columns"]]


def main() -> None:
    comm = MPIComm()
    site = TableTransformer(categorical=["grp", "yr"]).fit(site_rows(comm.rank), comm)
    rng = np.random.default_rng(comm.rank)
    out = site.decode(rng.normal(size=(500, site.width)).astype(np.float32), rng)
    found = comm.allgather((site.state(), sorted(out["grp"].dropna().unique()), sorted(out["yr"].dropna().unique()),
                            str(out["grp"].dtype), str(out["yr"].dtype)))
    if comm.rank != 0:
        return
    pooled = TableTransformer(categorical=["grp", "yr"]).fit(
        pd.concat([site_rows(k) for k in range(3)], ignore_index=True), SoloComm())
    grp, yr = pooled.transform_of("grp"), pooled.transform_of("yr")
    assert sorted(grp.labels_, key=int) == [str(v) for v in range(1, 11)], grp.labels_
    assert yr.labels_ == [float(v) for v in range(1995, 2004)], yr.labels_
    for state, grp_levels, yr_levels, grp_dtype, yr_dtype in found:
        assert _fitted(state) == _fitted(pooled.state()), "a site's levels or counts differ from the pooled fit"
        assert set(grp_levels) <= set(grp.labels_) and grp_dtype == "object", (grp_levels, grp_dtype)
        assert set(yr_levels) <= set(range(1995, 2004)) and yr_dtype == "Int64", (yr_levels, yr_dtype)
    print(f"grp={grp.labels_} yr={yr_dtype}", flush=True)
    print("EQUAL", flush=True)


if __name__ == "__main__":
    main()
