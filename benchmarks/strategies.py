"""Which federated strategy wins on non-IID hospitals: every strategy against centralized (the upper bound) and
isolated (one site alone, the lower bound), on the MDS cohort (3 sites that differ like a referral centre and
community hospitals), on flchain split into 3 sites by age (covariate shift), on flchain over 5 sites with a
Dirichlet(0.3) skew of death (label skew), and on ACTG 175 and WHAS500 split into 3 sites by age (the survival
cohorts), one MPI rank per site, for each seed.

Every figure is the release judged against the consortium's pooled held-out rows (`hpcsynth.evaluate.judge`).
Prints per cohort each strategy's scores (mean and seed-to-seed standard deviation), its gain over isolated, the
share of the isolated-to-centralized gap it closes, and its price: bytes exchanged and wall time per round; with
one seed and `--every`, quality, CSF and GSF against the round; and the survival figures (Kaplan-Meier gap overall
and per risk group, log-rank p, Cox hazard-ratio agreement, C-index and time-dependent AUROC TSTR against TRTR,
constraint violations) with each strategy's Kaplan-Meier gap less centralized's. The last line names the best
federated strategy that shares no rows and its ratio to centralized.

Usage: python benchmarks/strategies.py [--model tvae] [--seeds 0,1,2] [--rounds R] [--local-epochs E]
       [--every N] [--epsilon EPS] [--cohorts mds,...] [--strategies centralized,isolated,...]
       (needs mpiexec on PATH)
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

STRATEGIES = ["centralized", "isolated", "fedavg", "local_sgd", "fedprox", "fedopt", "scaffold", "feddyn",
              "fedavgm", "sd_sharing", "latent_alignment"]
SHARES_ROWS = ("sd_sharing",)  # strategies whose sites exchange synthetic rows, not only parameters
SHOWN = ("quality", "detection_auroc", "csf", "gsf", "tstr_auroc", "dcr_ratio")
SURVIVAL = ("km_max_gap", "km_group_max_gap", "km_logrank_p", "cox_hr_in_ci", "cox_log_hr_mae", "cindex_tstr",
            "cindex_trtr", "td_auroc_tstr", "td_auroc_trtr", "survival_constraint_violations")
PRICE = ("bytes_per_round", "wall_s_per_round", "wall_s")
CURVES = ("quality", "csf", "gsf")
COHORTS = {  # (data section, sites = MPI ranks)
    "mds": ({"builtin": "mds"}, 3),
    "flchain-by-age": ({"builtin": "flchain", "partition": {"kind": "covariate", "column": "age", "n_sites": 3}}, 3),
    "flchain-dirichlet": ({"builtin": "flchain",
                           "partition": {"kind": "dirichlet", "column": "death", "n_sites": 5, "alpha": 0.3}}, 5),
    "actg175-by-age": ({"builtin": "actg175", "partition": {"kind": "covariate", "column": "age", "n_sites": 3}}, 3),
    "whas500-by-age": ({"builtin": "whas500", "partition": {"kind": "covariate", "column": "age", "n_sites": 3}}, 3),
}
MODEL = {"tvae": {"batch_size": 500, "latent_dim": 64}, "ctgan": {"batch_size": 500}}


def run(cohort: str, strategies: list[str], seed: int, args: argparse.Namespace, folder: Path) -> Path:
    """Run the cohort's comparison job under mpiexec for one seed, then the full evaluation (`hpcsynth evaluate`:
    the job scores only its per-round subset; the survival table needs the C-index and time-dependent AUROC);
    return its comparison file."""
    data, sites = COHORTS[cohort]
    job = {"seed": seed, "data": data, "model": {"name": args.model, **MODEL.get(args.model, {})},
           "federation": {"strategy": strategies, "rounds": args.rounds, "local_epochs": args.local_epochs},
           "output": str(folder / f"{cohort}-{seed}.h5"), "progress": False}
    if args.every:
        job["evaluation"] = {"every": args.every}
    if args.epsilon:
        job["privacy"] = {"epsilon": args.epsilon, "delta": 1e-5}
    path = folder / f"{cohort}-{seed}.yaml"
    path.write_text(yaml.safe_dump(job))
    output = folder / f"{cohort}-{seed}.h5"
    mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).with_name("mpiexec"))
    for command in (["run", str(path)], ["evaluate", str(output), "--out", str(output.with_suffix(".html"))]):
        subprocess.run([mpiexec, "-n", str(sites), sys.executable, "-m", "hpcsynth.cli", *command], check=True,
                       stdout=subprocess.DEVNULL)
    return output


def scores(comparison: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores and price per strategy, with isolated's worst site as its own row; per-round curves)."""
    rows, curves = {}, []
    with h5py.File(comparison) as f:
        for name in compared_strategies(f):
            run = f["runs"][name]
            stored = read_evaluation(run)
            rounds = pd.DataFrame(run["rounds"][()])
            price = {"bytes_per_round": rounds["bytes_reduced"].mean(), "wall_s_per_round": rounds["wall_s"].mean(),
                     "wall_s": stored.scores.get("wall_s", float("nan"))}
            rows[name] = {**{k: stored.scores.get(k, float("nan")) for k in (*SHOWN, *SURVIVAL)}, **price}
            if stored.worst:
                rows[f"{name} (worst site)"] = {k: stored.worst.get(k, float("nan")) for k in (*SHOWN, *SURVIVAL)}
            kept = rounds[rounds["quality"].notna()] if "quality" in rounds else rounds.iloc[:0]
            curves += [{"strategy": name, "round": int(r["round"]) + 1, **{k: r.get(k, float("nan")) for k in CURVES}}
                       for _, r in kept.iterrows()]
    return pd.DataFrame.from_dict(rows, orient="index"), pd.DataFrame(curves)


def with_gaps(table: pd.DataFrame) -> pd.DataFrame:
    """One seed's table with each strategy's gain over isolated and share of the isolated-to-centralized gap."""
    low, high = table.loc["isolated", "quality"], table.loc["centralized", "quality"]
    table["gain_over_isolated"] = table["quality"] - low
    table["gap_closed"] = table["gain_over_isolated"] / max(high - low, 1e-9)
    table["ratio_to_centralized"] = table["quality"] / high
    table["km_gap_over_centralized"] = table["km_max_gap"] - table.loc["centralized", "km_max_gap"]
    return table


def report(cohort: str, tables: list[pd.DataFrame], curves: pd.DataFrame) -> tuple[str, float, float, float]:
    """Print the cohort's tables over seeds; return the best federated strategy that shares no rows, its mean
    quality, its seed-to-seed spread and its mean ratio to centralized."""
    every = pd.concat(tables, keys=range(len(tables)), names=["seed", "strategy"])
    columns = ["quality", "gain_over_isolated", "gap_closed", "ratio_to_centralized", *SHOWN[1:], *PRICE]
    mean = every.groupby(level="strategy", sort=False)[columns].mean()
    spread = every.groupby(level="strategy", sort=False)[["quality", "detection_auroc"]].std()
    mean.insert(1, "quality_sd", spread["quality"])
    mean.insert(mean.columns.get_loc("detection_auroc") + 1, "detection_sd", spread["detection_auroc"])
    print(f"\n{cohort}: mean over {len(tables)} seed(s), sd = seed-to-seed standard deviation "
          f"(isolated = one site alone: the sites' mean, and the worst site)")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(mean.round(4).to_string())
    print("(+ higher / - lower is better: " + ", ".join(f"{k} {metric(k).sign}" for k in SHOWN) + ")")
    survival = every.groupby(level="strategy", sort=False)[[*SURVIVAL, "km_gap_over_centralized"]].mean()
    if survival["km_max_gap"].notna().any():
        print(f"\n{cohort}: survival, mean over {len(tables)} seed(s) (km_gap_over_centralized: the strategy's "
              "Kaplan-Meier gap less centralized's)")
        with pd.option_context("display.width", 250, "display.max_columns", 30):
            print(survival.round(4).to_string())
        print("(+ higher / - lower is better: " + ", ".join(f"{k} {metric(k).sign}" for k in SURVIVAL) + ")")
    if not curves.empty:
        wide = curves.pivot(index="round", columns="strategy", values=list(CURVES))
        print(f"\n{cohort}: quality, CSF and GSF against the round (seed {curves['seed'].iloc[0]})")
        print(wide.round(4).to_string())
    federated = mean.drop(index=[i for i in mean.index
                                 if i.startswith(("centralized", "isolated", *SHARES_ROWS))])["quality"]
    name = federated.idxmax() if metric("quality").direction == "higher" else federated.idxmin()
    return name, federated[name], mean.loc[name, "quality_sd"], mean.loc[name, "ratio_to_centralized"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tvae", help="the generator family (tvae, ctgan, ...)")
    parser.add_argument("--seeds", default="0", help="comma-separated job seeds; several give mean and spread")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--local-epochs", type=int, default=10)
    parser.add_argument("--every", type=int, default=0, help="score the release every N rounds (first seed)")
    parser.add_argument("--epsilon", type=float, default=0.0, help="train under DP-SGD at this epsilon (delta 1e-5)")
    parser.add_argument("--cohorts", default=",".join(COHORTS))
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    args = parser.parse_args()
    strategies, seeds = args.strategies.split(","), [int(s) for s in args.seeds.split(",")]
    privacy = f", DP-SGD epsilon {args.epsilon} delta 1e-5" if args.epsilon else ""
    print(f"# {date.today()} {platform.machine()}, one MPI rank per site, {args.model}, {args.rounds} rounds x "
          f"{args.local_epochs} local epochs{privacy}, seeds {args.seeds}"
          + (f", scored every {args.every} rounds" if args.every else ""))
    best = []
    with tempfile.TemporaryDirectory() as tmp:
        for cohort in args.cohorts.split(","):
            tables, curves = [], []
            for i, seed in enumerate(seeds):
                every = args.every if i == 0 else 0
                table, curve = scores(run(cohort, strategies, seed, argparse.Namespace(**{**vars(args),
                                                                                          "every": every}), Path(tmp)))
                tables.append(with_gaps(table))
                if i == 0:  # the curves of the first seed (the others are scored after their last round only)
                    curves.append(curve.assign(seed=seed))
            best.append((cohort, *report(cohort, tables, pd.concat(curves, ignore_index=True))))
    for cohort, name, value, spread, ratio in best:
        print(f"{cohort}: best federated strategy without shared rows {name} (quality {value:.4f} sd {spread:.4f}, "
              f"{ratio:.3f}x centralized)")


if __name__ == "__main__":
    main()
