"""Which federated strategy wins on non-IID hospitals: every strategy against centralized (the upper bound) and
isolated (one site alone, the lower bound), on the MDS cohort (3 sites that differ like a referral centre and
community hospitals) and on flchain split into 3 sites by age (covariate shift), TVAE, 3 MPI ranks.

Every figure is the release judged against the consortium's pooled held-out rows (`hpcsynth.evaluate.judge`).
Prints per cohort each strategy's scores, its gain over isolated and the share of the isolated-to-centralized
gap it closes, then quality, CSF and GSF against the round; the last line names the best federated strategy
and its ratio to centralized.

Usage: python benchmarks/strategies.py [--rounds R] [--local-epochs E] [--every N] [--cohorts mds,...]
       [--strategies centralized,isolated,...]   (needs mpiexec on PATH)
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
from hpcsynth.io.evaluation import read_evaluation
from hpcsynth.io.runfile import compared_strategies

STRATEGIES = ["centralized", "isolated", "fedavg", "fedprox", "fedopt", "sd_sharing", "latent_alignment"]
SHOWN = ("quality", "detection_auroc", "csf", "gsf", "tstr_auroc", "dcr_ratio", "wall_s")
CURVES = ("quality", "csf", "gsf")
COHORTS = {
    "mds": {"builtin": "mds"},
    "flchain-by-age": {"builtin": "flchain", "partition": {"kind": "covariate", "column": "age", "n_sites": 3}},
}


def run(cohort: str, data: dict, strategies: list[str], args: argparse.Namespace, folder: Path) -> Path:
    """Run the cohort's comparison job under mpiexec; return its comparison file."""
    job = {"seed": 0, "data": data, "model": {"name": "tvae", "batch_size": 500, "latent_dim": 64},
           "federation": {"strategy": strategies, "rounds": args.rounds, "local_epochs": args.local_epochs},
           "evaluation": {"every": args.every}, "output": str(folder / f"{cohort}.h5"), "progress": False}
    path = folder / f"{cohort}.yaml"
    path.write_text(yaml.safe_dump(job))
    mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).with_name("mpiexec"))
    subprocess.run([mpiexec, "-n", "3", sys.executable, "-m", "hpcsynth.cli", "run", str(path)], check=True,
                   stdout=subprocess.DEVNULL)
    return folder / f"{cohort}.h5"


def scores(comparison: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores per strategy, with isolated's worst site as its own row; per-round curves per strategy)."""
    rows, curves = {}, []
    with h5py.File(comparison) as f:
        for name in compared_strategies(f):
            run = f["runs"][name]
            stored = read_evaluation(run)
            rows[name] = {k: stored.scores.get(k, float("nan")) for k in SHOWN}
            if stored.worst:
                rows[f"{name} (worst site)"] = {k: stored.worst.get(k, float("nan")) for k in SHOWN}
            rounds = pd.DataFrame(run["rounds"][()])
            kept = rounds[rounds["quality"].notna()]
            curves += [{"strategy": name, "round": int(r["round"]) + 1, **{k: r[k] for k in CURVES}}
                       for _, r in kept.iterrows()]
    return pd.DataFrame.from_dict(rows, orient="index"), pd.DataFrame(curves)


def report(cohort: str, table: pd.DataFrame, curves: pd.DataFrame) -> tuple[str, float, float]:
    """Print the cohort's tables; return the best federated strategy, its quality and its ratio to centralized."""
    low, high = table.loc["isolated", "quality"], table.loc["centralized", "quality"]
    table["gain_over_isolated"] = table["quality"] - low
    table["gap_closed"] = table["gain_over_isolated"] / max(high - low, 1e-9)
    print(f"\n{cohort} (isolated = one site alone: the sites' mean, and the worst site)")
    print(table[["quality", "gain_over_isolated", "gap_closed", *SHOWN[1:]]].round(4).to_string())
    print("(+ higher / - lower is better: " + ", ".join(f"{k} {metric(k).sign}" for k in SHOWN) + ")")
    wide = curves.pivot(index="round", columns="strategy", values=list(CURVES))
    print(f"\n{cohort}: quality, CSF and GSF against the round")
    print(wide.round(4).to_string())
    federated = table.drop(index=[i for i in table.index if i.startswith(("centralized", "isolated"))])["quality"]
    name = federated.idxmax() if metric("quality").direction == "higher" else federated.idxmin()
    return name, federated[name], federated[name] / high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--local-epochs", type=int, default=10)
    parser.add_argument("--every", type=int, default=5, help="score the release every N rounds")
    parser.add_argument("--cohorts", default=",".join(COHORTS))
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    print(f"# {date.today()} {platform.machine()}, 3 MPI ranks, TVAE, {args.rounds} rounds x {args.local_epochs} "
          f"local epochs, scored every {args.every} rounds")
    best = []
    with tempfile.TemporaryDirectory() as tmp:
        for cohort in args.cohorts.split(","):
            table, curves = scores(run(cohort, COHORTS[cohort], strategies, args, Path(tmp)))
            best.append((cohort, *report(cohort, table, curves)))
    for cohort, name, value, ratio in best:
        print(f"{cohort}: best federated strategy {name} (quality {value:.4f}, {ratio:.3f}x centralized)")


if __name__ == "__main__":
    main()
