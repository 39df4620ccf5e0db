"""Which federated strategy wins on non-IID hospitals: every strategy against centralized (the upper bound) and
isolated (the lower bound), on the MDS cohort (3 sites that differ like a referral centre and community
hospitals) and on flchain split into 3 sites by age (covariate shift), TVAE, 3 MPI ranks.

Prints per cohort the fidelity of each strategy, its gain over isolated and the share of the isolated-to-
centralized gap it closes; the last line names the best federated strategy and its ratio to centralized.

Usage: python benchmarks/strategies.py [--rounds R] [--local-epochs E]   (needs mpiexec on PATH)
"""
from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import h5py
import pandas as pd
import yaml

from hpcsynth.evaluate.metrics import metric

STRATEGIES = ["centralized", "isolated", "fedavg", "fedprox", "fedopt", "sd_sharing", "latent_alignment"]
SHOWN = ("fidelity", "dcr_synthetic_p5", "wall_s")  # scores of the job's comparison table
COHORTS = {
    "mds": {"builtin": "mds"},
    "flchain-by-age": {"builtin": "flchain", "partition": {"kind": "covariate", "column": "age", "n_sites": 3}},
}


def run(cohort: str, data: dict, rounds: int, local_epochs: int, folder: Path) -> pd.DataFrame:
    job = {"seed": 0, "data": data, "model": {"name": "tvae", "batch_size": 500, "latent_dim": 64},
           "federation": {"strategy": STRATEGIES, "rounds": rounds, "local_epochs": local_epochs},
           "output": str(folder / f"{cohort}.h5"), "progress": False}
    path = folder / f"{cohort}.yaml"
    path.write_text(yaml.safe_dump(job))
    mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).with_name("mpiexec"))
    subprocess.run([mpiexec, "-n", "3", sys.executable, "-m", "hpcsynth.cli", "run", str(path)], check=True,
                   stdout=subprocess.DEVNULL)
    with h5py.File(folder / f"{cohort}.h5") as f:
        table = pd.DataFrame(f["comparison"][()])
    table["strategy"] = table["strategy"].str.decode("utf-8")
    return table.set_index("strategy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--local-epochs", type=int, default=10)
    args = parser.parse_args()
    print(f"# {date.today()} {platform.machine()}, 3 MPI ranks, TVAE, {args.rounds} rounds x {args.local_epochs} "
          f"local epochs")
    best = []
    with tempfile.TemporaryDirectory() as tmp:
        for cohort, data in COHORTS.items():
            table = run(cohort, data, args.rounds, args.local_epochs, Path(tmp))
            low, high = table.loc["isolated", "fidelity"], table.loc["centralized", "fidelity"]
            table["gain_over_isolated"] = table["fidelity"] - low
            table["gap_closed"] = table["gain_over_isolated"] / max(high - low, 1e-9)
            print(f"\n{cohort}")
            print(table[["fidelity", "gain_over_isolated", "gap_closed", *SHOWN[1:]]].round(4).to_string())
            print("(+ higher / - lower is better: " + ", ".join(f"{k} {metric(k).sign}" for k in SHOWN) + ")")
            federated = table.drop(index=["centralized", "isolated"])["fidelity"]
            name = federated.idxmax() if metric("fidelity").direction == "higher" else federated.idxmin()
            best.append((cohort, name, federated[name], federated[name] / high))
    for cohort, name, value, ratio in best:
        print(f"{cohort}: best federated strategy {name} (fidelity {value:.4f}, {ratio:.3f}x centralized)")


if __name__ == "__main__":
    main()
