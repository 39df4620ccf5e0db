"""Tuning: what a study buys over the defaults, checked on rows the search never saw; and DP-TVAE's quality
against epsilon.

Cases: flchain and ACTG 175 (centralized, one site) and MDS (FedAvg over 3 sites, `mpiexec -n 3`), each for CTGAN
and TVAE. Per case, `hpcsynth tune --local` runs a study of `--trials` trials over the family's optimiser and
size settings (`SPACES`), objective quality, every trial scored on a validation share of the training rows
(the study's `validation`), never on the held-out rows. Then the default job and `/best`'s job each run once
and are judged on the held-out rows, the rows that check the search. Printed per case: quality and TSTR AUROC
(with TRTR, where the cohort has a target) of the default and of the tuned job, and the tuned job's gain.

`--sweep` trains DP-TVAE with FedAvg on MDS at each epsilon of `--epsilons` (and without DP), scored the same
way: the quality-against-epsilon curve.

The last line: the mean over the cases of tuned quality / default quality.

    python benchmarks/tuning.py [--trials 40] [--parallel 2] [--epochs 300] [--cases flchain-ctgan,...]
                                [--sweep] [--epsilons 0.5,1,2,4,8] [--folder DIR]     (needs mpiexec on PATH)

With `--folder`, a run stopped part-way (the whole benchmark takes hours on a small machine) is continued by the
same command: finished runs are read back and a stopped study is resumed (`hpcsynth tune --resume`).
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from datetime import date
from pathlib import Path

import h5py
import pandas as pd
import yaml

CLI = [sys.executable, "-m", "hpcsynth.cli"]
COHORTS = {  # the data section and the strategy of each cohort's job
    "flchain": ({"builtin": "flchain", "n_sites": 1}, "centralized"),
    "actg175": ({"builtin": "actg175", "n_sites": 1}, "centralized"),
    "mds": ({"builtin": "mds"}, "fedavg"),
}
SPACES = {
    "tvae": {"model.lr": {"log_float": [1e-4, 1e-2]}, "model.batch_size": {"int": [100, 1000]},
             "model.latent_dim": {"choice": [16, 32, 64, 128]}, "model.loss_factor": {"float": [0.5, 4.0]},
             "model.weight_decay": {"log_float": [1e-6, 1e-3]}},
    "ctgan": {"model.generator_lr": {"log_float": [5e-5, 2e-3]}, "model.discriminator_lr": {"log_float": [5e-5, 2e-3]},
              "model.batch_size": {"choice": [100, 200, 500, 1000]}, "model.discriminator_steps": {"int": [1, 5]},
              "model.embedding_dim": {"choice": [32, 64, 128, 256]}},
}
SHOWN = ("quality", "tstr_auroc", "trtr_auroc")
ROUNDS = 10  # the epochs are spread over this many rounds (FedAvg averages after each)


def base_job(cohort: str, model: str, epochs: int, output: Path, epsilon: float | None = None) -> dict:
    """The cohort's job at the family's defaults: `epochs` epochs in ROUNDS rounds."""
    data, strategy = COHORTS[cohort]
    job = {"seed": 0, "data": dict(data), "model": {"name": model},
           "federation": {"strategy": strategy, "rounds": ROUNDS, "local_epochs": max(1, epochs // ROUNDS)},
           "output": str(output), "progress": False}
    if epsilon is not None:
        job["privacy"] = {"epsilon": epsilon, "delta": 1e-5}
    return job


def ranks(job: dict) -> int:
    return 1 if job["data"].get("n_sites") == 1 else 3


def run_job(job: dict, path: Path) -> dict[str, float]:
    """Run a job (under `mpiexec -n 3` when it has 3 sites), unless its run file is there from an earlier call
    on the same folder; its scores from the run file's /evaluation."""
    if not Path(job["output"]).is_file():
        path.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
        launcher = ["mpiexec", "-n", str(ranks(job))] if ranks(job) > 1 else []
        done = subprocess.run([*launcher, *CLI, "run", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{path}: exit {done.returncode}\n{done.stderr[-2000:]}")
    with h5py.File(job["output"]) as f:
        scores = dict(f["evaluation"].attrs)
    return {k: float(scores.get(k, float("nan"))) for k in SHOWN}


def tune(cohort: str, model: str, args: argparse.Namespace, folder: Path) -> dict:
    """One case: the study, then the default and the tuned job judged on the held-out rows. A study already in
    `folder` (a stopped run of this script with the same `--folder`) is resumed, not started again."""
    folder.mkdir(parents=True, exist_ok=True)
    default = base_job(cohort, model, args.epochs, folder / "default.h5")
    (folder / "job.yaml").write_text(yaml.safe_dump(default, sort_keys=False), encoding="utf-8")
    study = {"job": "job.yaml", "space": SPACES[model], "objectives": ["quality"], "trials": args.trials,
             "parallel": args.parallel, "validation": args.validation, "seed": 0, "output": "study.h5"}
    (folder / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    resume = ["--resume"] if (folder / "study" / "journal.log").is_file() else []
    done = subprocess.run([*CLI, "tune", str(folder / "study.yaml"), "--local", *resume], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{cohort}-{model} study: exit {done.returncode}\n{done.stderr[-2000:]}")
    with h5py.File(folder / "study.h5") as f:
        tuned = yaml.safe_load(f["best"][()].decode())
    tuned["output"] = str(folder / "tuned.h5")
    before, after = run_job(default, folder / "default.yaml"), run_job(tuned, folder / "tuned.yaml")
    row = {"case": f"{cohort}-{model}", **{f"default_{k}": v for k, v in before.items()},
           **{f"tuned_{k}": v for k, v in after.items()}}
    row["gain"] = after["quality"] - before["quality"]
    row["ratio"] = after["quality"] / before["quality"]
    return row


def sweep(args: argparse.Namespace, folder: Path) -> pd.DataFrame:
    """DP-TVAE with FedAvg on MDS at every epsilon, and without DP."""
    rows = []
    for epsilon in [*args.epsilons, None]:
        name = "none" if epsilon is None else f"{epsilon:g}"
        job = base_job("mds", "tvae", args.epochs, folder / f"dp-{name}.h5", epsilon)
        rows.append({"epsilon": name, **run_job(job, folder / f"dp-{name}.yaml")})
    return pd.DataFrame(rows).set_index("epsilon")


def targets(table: pd.DataFrame) -> str:
    """The issue's targets on the cases run: the tuned quality above the default's, and CTGAN's TSTR AUROC on
    ACTG 175 above chance and within 0.05 of TRTR (default and tuned)."""
    beaten = int((table["gain"] > 0).sum())
    lines = [f"target: tuned quality above the default's: {beaten} of {len(table)} case(s)"]
    if "actg175-ctgan" in table.index:
        row = table.loc["actg175-ctgan"]
        for which in ("default", "tuned"):
            tstr, trtr = row[f"{which}_tstr_auroc"], row[f"{which}_trtr_auroc"]
            met = tstr > 0.5 and trtr - tstr <= 0.05
            lines.append(f"target: CTGAN's TSTR AUROC on ACTG 175 above chance and within 0.05 of TRTR, {which}: "
                         f"{'met' if met else 'not met'} ({tstr:.3f} against {trtr:.3f})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cases = [f"{c}-{m}" for c in COHORTS for m in SPACES]
    parser.add_argument("--trials", type=int, default=40, help="the budget of every study")
    parser.add_argument("--parallel", type=int, default=2, help="trials at once")
    parser.add_argument("--epochs", type=int, default=300, help="training epochs of every job (SDV's default)")
    parser.add_argument("--validation", type=float, default=0.2, help="the trials' validation share")
    parser.add_argument("--cases", default=",".join(cases), help="comma-separated, from " + ", ".join(cases))
    parser.add_argument("--sweep", action="store_true", help="also the DP-TVAE epsilon sweep on MDS")
    parser.add_argument("--epsilons", default="0.5,1,2,4,8", help="the sweep's epsilons")
    parser.add_argument("--folder", help="keep the studies and runs here (default: a temporary folder); run again "
                                         "with the same folder, it resumes a stopped study and reuses finished runs")
    args = parser.parse_args()
    args.epsilons = [float(e) for e in args.epsilons.split(",")]
    chosen = args.cases.split(",") if args.cases else []
    unknown = [c for c in chosen if c not in cases]
    if unknown:
        parser.error(f"--cases: unknown case {unknown[0]!r} (known: {', '.join(cases)})")
    print(f"# {date.today()} {platform.machine()}, {args.trials} trials per study ({args.parallel} at once), "
          f"{args.epochs} epochs, validation {args.validation:g}", flush=True)
    with (nullcontext(args.folder) if args.folder else tempfile.TemporaryDirectory()) as tmp:
        rows = []
        for case in chosen:
            cohort, model = case.split("-")
            rows.append(tune(cohort, model, args, Path(tmp) / case))
            print(pd.DataFrame(rows[-1:]).set_index("case").round(4).to_string(), flush=True)
        if args.sweep:
            print("\nDP-TVAE, FedAvg on MDS (3 sites): quality against epsilon (delta 1e-5)")
            print(sweep(args, Path(tmp)).round(4).to_string(), flush=True)
    if rows:
        table = pd.DataFrame(rows).set_index("case")
        print("\n" + table.round(4).to_string())
        print(targets(table))
        print(f"tuned quality / default quality, mean over {len(rows)} case(s): {table['ratio'].mean():.3f}x")


if __name__ == "__main__":
    main()
