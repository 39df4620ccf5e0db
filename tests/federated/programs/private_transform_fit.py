"""Under mpiexec -n 3: the private transform fit ends with the same state on every rank, its merged counts
differ from the exact ones by noise of the calibrated scale, and its releases are counted; prints SAME."""
import json

import numpy as np

from hpcsynth.comm import MPIComm
from hpcsynth.data.mds import simulate_mds
from hpcsynth.data.private_stats import StatisticsBudget
from hpcsynth.data.transformer import TableTransformer


def main() -> None:
    comm = MPIComm()
    frame = simulate_mds(n_patients=3000, seed=4).drop(columns=["patient_id"])
    mine = frame[frame["site"] == sorted(frame["site"].unique())[comm.rank]].drop(columns=["site"])
    budget = StatisticsBudget(epsilon=8.0, delta=9e-6, levels_delta=1e-6, accountant="rdp", seed=11)
    private = TableTransformer(bounds={"age": [18, 100]}).fit(mine, comm, budget)
    exact = TableTransformer(bounds={"age": [18, 100]}).fit(mine, comm)
    states = comm.allgather(private.state())
    if comm.rank != 0:
        return
    assert all(s == states[0] for s in states), "ranks disagree on the private transform"
    z = private.privacy_["noise_multiplier"]
    deviations = []
    for p, e in zip(private.transforms_, exact.transforms_):
        if hasattr(p, "labels_") and p.spec.kind == "binary":  # same public levels: counts comparable
            common = e.counts_[:2] > 50  # clipping at 0 cannot touch these
            deviations += list((p.counts_[:2] - e.counts_[:2])[common])
    deviations = np.asarray(deviations)
    print(json.dumps({"z": z, "releases": private.privacy_["releases"], "std": float(deviations.std()),
                      "mean": float(deviations.mean()), "n": int(deviations.size),
                      "age": [private.transform_of("age").min_, private.transform_of("age").max_]}), flush=True)
    print("SAME", flush=True)


if __name__ == "__main__":
    main()
