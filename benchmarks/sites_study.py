"""Does adding hospitals hurt? flchain over 3, 8, 16, 32 and 64 sites (a Dirichlet(0.3) skew of death, so sites
differ in size and outcome mix), FedAvg against sd_sharing, with centralized and isolated (one site alone) as
bounds (isolated up to 16 sites: its scoring grows with the square of the sites), every release judged against
the consortium's pooled held-out rows.

More sites than the machine has cores: `federation.sites_per_rank` hosts the sites on 2 MPI ranks (3 sites: 3
ranks). Prints per number of sites each strategy's quality, detection AUROC, ratio to centralized, bytes per
round and wall time; the last line is FedAvg's quality as a ratio to sd_sharing's (the named peer) at the largest
number of sites.

Usage: python benchmarks/sites_study.py [--sites 3,8,16,32,64] [--rounds R] [--local-epochs E] [--seed S]
"""
from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd
import yaml
from strategies import scores

STRATEGIES = ["centralized", "isolated", "fedavg", "sd_sharing"]
ISOLATED_UP_TO = 16  # scoring isolated is quadratic in the sites (each site's release against every site)
SHOWN = ["quality", "detection_auroc", "ratio_to_centralized", "bytes_per_round", "wall_s"]


def run(n_sites: int, args: argparse.Namespace, folder: Path) -> tuple[pd.DataFrame, float]:
    """One comparison job over `n_sites` sites; its table and the job's whole wall time."""
    ranks = n_sites if n_sites <= 3 else 2
    strategies = [s for s in STRATEGIES if s != "isolated" or n_sites <= ISOLATED_UP_TO]
    job = {"seed": args.seed,
           "data": {"builtin": "flchain",
                    "partition": {"kind": "dirichlet", "column": "death", "n_sites": n_sites, "alpha": 0.3}},
           "model": {"name": "tvae", "batch_size": 500, "latent_dim": 64},
           "federation": {"strategy": strategies, "rounds": args.rounds, "local_epochs": args.local_epochs,
                          "sites_per_rank": n_sites // ranks},
           "output": str(folder / f"sites-{n_sites}.h5"), "progress": False}
    path = folder / f"sites-{n_sites}.yaml"
    path.write_text(yaml.safe_dump(job))
    mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).with_name("mpiexec"))
    t0 = time.perf_counter()
    subprocess.run([mpiexec, "-n", str(ranks), sys.executable, "-m", "hpcsynth.cli", "run", str(path)], check=True,
                   stdout=subprocess.DEVNULL)
    table, _ = scores(folder / f"sites-{n_sites}.h5")
    table["ratio_to_centralized"] = table["quality"] / table.loc["centralized", "quality"]
    return table, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default="3,8,16,32,64")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--local-epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts = [int(s) for s in args.sites.split(",")]
    if any(n > 3 and n % 2 for n in counts):
        parser.error("--sites: counts above 3 must be even (they are hosted on 2 ranks)")
    print(f"# {date.today()} {platform.machine()}, flchain Dirichlet(0.3) over death, tvae, {args.rounds} rounds x "
          f"{args.local_epochs} local epochs, seed {args.seed}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            table, job_s = run(n, args, Path(tmp))
            print(f"\n{n} sites (job {job_s:.0f} s):")
            with pd.option_context("display.width", 200):
                print(table[SHOWN].round(4).to_string())
            rows.append((n, table))
    n, table = rows[-1]
    print(f"\nfedavg quality / sd_sharing quality at {n} sites: "
          f"{table.loc['fedavg', 'quality'] / table.loc['sd_sharing', 'quality']:.3f}")


if __name__ == "__main__":
    main()
