"""Quality: hpcsynth's five generator families against SDV's GaussianCopula, CTGAN and TVAE, on four cohorts.

Every model trains on the same training split of flchain, ACTG 175, the MDS cohort and WHAS500, in a process of its own,
and releases as many rows as the split has; scores: SDMetrics' quality, TSTR AUROC on the held-out rows, DCR,
the survival figures of hpcsynth's own evaluation (Kaplan-Meier max gap, C-index and time-dependent AUROC at 1, 3
and 5 years, each TSTR against TRTR, and the rows breaking a survival constraint),
fit and sample seconds. What each score means and how the runs are matched is in benchmarks/README.md. The last
line gives, per cohort, hpcsynth's best family over SDV's best model on quality.

    python benchmarks/quality.py [--epochs 100] [--ddpm-epochs 300] [--cohorts flchain,actg175,mds,whas500]
                                 [--models all] [--jobs 2] [--threads 1] [--holdout 0.25]
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

COHORTS = ("flchain", "actg175", "mds", "whas500")
HPCSYNTH = ("hpcsynth-ctgan", "hpcsynth-tvae", "hpcsynth-vae_bgm", "hpcsynth-bayesnet", "hpcsynth-ddpm")
SDV = ("sdv-gaussiancopula", "sdv-ctgan", "sdv-tvae")
REFERENCE = "real-holdout"
MODELS = HPCSYNTH + SDV
# rough relative cost, to start the longest processes first (the pool then ends nearly together)
COST = {"hpcsynth-ddpm": 10, "sdv-ctgan": 8, "hpcsynth-ctgan": 4, "sdv-tvae": 3, "hpcsynth-vae_bgm": 2,
        "hpcsynth-tvae": 1.5, "sdv-gaussiancopula": 0.5, "hpcsynth-bayesnet": 0.2, REFERENCE: 0.1}
SIZE = {"flchain": 1.0, "mds": 0.9, "actg175": 0.3, "whas500": 0.1}
# the survival figures, computed by hpcsynth.evaluate.suite on the held-out rows (one process: the pooled figure)
SURVIVAL = ("km_max_gap", "cindex_tstr", "cindex_trtr", "td_auroc_tstr", "td_auroc_trtr",
            "survival_constraint_violations")


# -- data ---------------------------------------------------------------------------------------------------
def prepare(name: str, holdout: float, seed: int) -> dict:
    """The cohort as every model sees it: complete in its continuous columns, split once into train and holdout."""
    import numpy as np

    from hpcsynth.data.cohorts import COHORTS as DECLARED
    from hpcsynth.data.cohorts import load_cohort
    from hpcsynth.data.mds import MDS_METADATA, simulate_mds
    from hpcsynth.data.transformer import TableTransformer

    if name == "mds":  # as benchmarks/train_speed.py builds it
        frame = simulate_mds(n_patients=4427, seed=0).drop(columns=["patient_id", "site"])
        categorical, time_column, event = MDS_METADATA["categorical"], MDS_METADATA["time"], MDS_METADATA["event"]
        leaks = []
    else:
        cohort = DECLARED[name]
        dropped = [*cohort.id_columns, *([cohort.site_column] if cohort.site_column else [])]
        frame = load_cohort(name).drop(columns=dropped)
        categorical, time_column, event = list(cohort.categorical), cohort.time, cohort.event
        leaks = list(cohort.outcome_columns)  # they give the target away (flchain's cause of death)
    schema = TableTransformer(categorical, time_column, event).fit(frame).schema_
    continuous = [s.name for s in schema if s.kind in ("integer", "continuous")]
    discrete = [s.name for s in schema if s.kind in ("categorical", "binary")]
    complete = frame.dropna(subset=continuous).reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(complete))
    cut = int(round(len(complete) * (1.0 - holdout)))
    return {"name": name, "rows_loaded": len(frame), "train": complete.iloc[order[:cut]].reset_index(drop=True),
            "holdout": complete.iloc[order[cut:]].reset_index(drop=True), "categorical": list(categorical),
            "time": time_column, "event": event, "discrete": discrete, "leaks": leaks}


# -- models -------------------------------------------------------------------------------------------------
def hpcsynth_model(kind: str, data: dict, epochs: int, ddpm_epochs: int):
    """hpcsynth's family `kind` with its defaults (which are SDV's where SDV has the model), on the CPU."""
    from hpcsynth.models import CTGAN, TVAE, VAEBGM, BayesianNetwork, TabDDPM

    declared = {"categorical": data["categorical"], "time": data["time"], "event": data["event"], "seed": 0}
    if kind == "bayesnet":
        return BayesianNetwork(**declared)
    family = {"ctgan": CTGAN, "tvae": TVAE, "vae_bgm": VAEBGM, "ddpm": TabDDPM}[kind]
    return family(epochs=ddpm_epochs if kind == "ddpm" else epochs, device="cpu", **declared)


class SDVTable:
    """SDV 2's synthesizers take and return {table name: DataFrame}; this gives them `fit(df)` / `sample(n)`."""

    def __init__(self, synthesizer, name: str) -> None:
        self.synthesizer = synthesizer
        self.name = name

    def fit(self, frame) -> SDVTable:
        self.synthesizer.fit({self.name: frame})
        return self

    def sample(self, n: int):
        out = self.synthesizer.sample(n)
        return out[self.name] if isinstance(out, dict) else out


def sdv_model(kind: str, data: dict, epochs: int) -> SDVTable:
    """SDV's synthesizer `kind` with its defaults, told the same discrete columns as SDMetrics."""
    from sdv.metadata import Metadata
    from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer

    columns = {c: {"sdtype": "categorical" if c in data["discrete"] else "numerical"} for c in data["train"].columns}
    metadata = Metadata.load_from_dict({"tables": {data["name"]: {"columns": columns}}})
    if kind == "gaussiancopula":
        return SDVTable(GaussianCopulaSynthesizer(metadata), data["name"])
    family = {"ctgan": CTGANSynthesizer, "tvae": TVAESynthesizer}[kind]
    return SDVTable(family(metadata, epochs=epochs, enable_gpu=False), data["name"])


def synthesise(model_name: str, data: dict, epochs: int, ddpm_epochs: int) -> tuple[object, float, float]:
    """(synthetic table of len(train) rows, fit seconds, sample seconds); the held-out rows for the reference."""
    if model_name == REFERENCE:
        return data["holdout"], 0.0, 0.0
    library, kind = model_name.split("-", 1)
    model = hpcsynth_model(kind, data, epochs, ddpm_epochs) if library == "hpcsynth" else sdv_model(kind, data, epochs)
    start = time.perf_counter()
    model.fit(data["train"])
    fitted = time.perf_counter()
    synthetic = model.sample(len(data["train"]))
    return synthetic, fitted - start, time.perf_counter() - fitted


# -- scores -------------------------------------------------------------------------------------------------
def quality(real, synthetic, discrete: list[str]) -> tuple[float, float, float]:
    """SDMetrics' QualityReport: (score, column shapes, column pair trends)."""
    from sdmetrics.reports.single_table import QualityReport

    metadata = {"columns": {c: {"sdtype": "categorical" if c in discrete else "numerical"} for c in real.columns}}
    report = QualityReport()
    report.generate(real, synthetic[real.columns], metadata, verbose=False)
    properties = report.get_properties().set_index("Property")["Score"]
    return float(report.get_score()), float(properties["Column Shapes"]), float(properties["Column Pair Trends"])


def survival(synthetic, data: dict, transformer) -> dict[str, float]:
    """The survival figures of hpcsynth's evaluation (`SURVIVAL`) on the held-out rows, with the cohort's declared
    Cox covariates and time unit."""
    from hpcsynth.comm import SoloComm
    from hpcsynth.data.cohorts import COHORTS as DECLARED
    from hpcsynth.evaluate.suite import EvalSpec, evaluate

    spec = EvalSpec.default(transformer, DECLARED.get(data["name"]))
    found = evaluate(synthetic, data["train"], data["holdout"], transformer, SoloComm(), spec, metrics=SURVIVAL)
    return {name: found.scores.get(name, float("nan")) for name in SURVIVAL}


def scores(model_name: str, synthetic, data: dict) -> dict[str, float]:
    """Quality, TSTR AUROC on the held-out rows (TRTR for the reference row), DCR to the training rows and the
    survival figures (the reference row's "synthetic" table is the training split)."""
    import numpy as np

    from hpcsynth.data.transformer import TableTransformer
    from hpcsynth.evaluate.privacy import closest_distances, privacy_features
    from hpcsynth.evaluate.utility import tstr_trtr

    train, holdout = data["train"], data["holdout"]
    transformer = TableTransformer(data["categorical"], data["time"], data["event"]).fit(train)
    features = [c for c in train.columns if c != data["event"] and c not in data["leaks"]]
    total, shapes, pairs = quality(train, synthetic, data["discrete"])
    released = synthetic if model_name != REFERENCE else train
    utility = tstr_trtr(released, train, holdout, transformer, data["event"], features)
    distances = closest_distances(privacy_features(synthetic, transformer), privacy_features(train, transformer))
    return {"quality": total, "shapes": shapes, "pairs": pairs, "tstr_auroc": utility["tstr_auroc"],
            "dcr_p5": float(np.percentile(distances, 5)), "dcr_median": float(np.median(distances)),
            "exact_matches": float(np.mean(distances == 0.0)), **survival(released, data, transformer)}


def child(model_name: str, data_path: Path, epochs: int, ddpm_epochs: int, threads: int) -> dict:
    """One model in this process: train, sample, score; a JSON line for the parent."""
    import numpy as np
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    np.random.seed(0)
    with open(data_path, "rb") as handle:
        data = pickle.load(handle)
    synthetic, fit_s, sample_s = synthesise(model_name, data, epochs, ddpm_epochs)
    return {"model": model_name, "fit_s": fit_s, "sample_s": sample_s, **scores(model_name, synthetic, data)}


# -- the parent ---------------------------------------------------------------------------------------------
def launch(model_name: str, data_path: Path, args: argparse.Namespace) -> dict:
    """Run one model in its own process; a failure or a timeout becomes an error row."""
    command = [sys.executable, __file__, "--child", model_name, "--data", str(data_path), "--epochs",
               str(args.epochs), "--ddpm-epochs", str(args.ddpm_epochs), "--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "NUMBA_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    try:
        out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"model": model_name, "error": f"timed out after {args.timeout} s"}
    if out.returncode != 0:
        lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
        return {"model": model_name, "error": (lines[-1] if lines else f"exit status {out.returncode}")[:150]}
    try:
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"model": model_name, "error": "no result line"}
    result["process_s"] = time.perf_counter() - start
    return result


def table(results: list[dict]) -> str:
    lines = [f"{'model':20s} {'quality':>8s} {'shapes':>7s} {'pairs':>7s} {'tstr_auroc':>10s} {'dcr_p5':>7s} "
             f"{'dcr_median':>10s} {'km_gap':>7s} {'c_tstr':>7s} {'c_trtr':>7s} {'td_tstr':>7s} {'td_trtr':>7s} "
             f"{'violations':>10s} {'fit_s':>7s} {'sample_s':>8s}"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['model']:20s} error: {r['error']}")
            continue
        name = "real holdout" if r["model"] == REFERENCE else r["model"]
        lines.append(f"{name:20s} {r['quality']:8.4f} {r['shapes']:7.4f} {r['pairs']:7.4f} {r['tstr_auroc']:10.4f} "
                     f"{r['dcr_p5']:7.4f} {r['dcr_median']:10.4f} {r['km_max_gap']:7.4f} {r['cindex_tstr']:7.4f} "
                     f"{r['cindex_trtr']:7.4f} {r['td_auroc_tstr']:7.4f} {r['td_auroc_trtr']:7.4f} "
                     f"{r['survival_constraint_violations']:10.0f} {r['fit_s']:7.1f} {r['sample_s']:8.1f}")
    return "\n".join(lines)


def best(results: list[dict], names: tuple[str, ...]) -> dict | None:
    scored = [r for r in results if r["model"] in names and "error" not in r]
    return max(scored, key=lambda r: r["quality"]) if scored else None


def ratio_line(per_cohort: dict[str, list[dict]]) -> str:
    parts = []
    for cohort, results in per_cohort.items():
        ours, peer = best(results, HPCSYNTH), best(results, SDV)
        if ours is None or peer is None:
            parts.append(f"{cohort} n/a")
            continue
        parts.append(f"{cohort} {ours['quality'] / peer['quality']:.3f} ({ours['model'].split('-', 1)[1]} "
                     f"{ours['quality']:.4f} / {peer['model'].split('-', 1)[1]} {peer['quality']:.4f})")
    return "quality ratio (best hpcsynth family / best SDV model; target >= 1): " + "  ".join(parts)


def parse_list(text: str, allowed: tuple[str, ...], prefix: str = "") -> list[str]:
    if text == "all":
        return list(allowed)
    names = [n if n in allowed else prefix + n for n in text.split(",")]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise SystemExit(f"unknown: {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="CTGAN, TVAE and VAE-BGM epochs (both libraries)")
    parser.add_argument("--ddpm-epochs", type=int, default=300, help="TabDDPM epochs")
    parser.add_argument("--cohorts", default=",".join(COHORTS), help="comma-separated, from " + ", ".join(COHORTS))
    parser.add_argument("--models", default="all", help="comma-separated, from " + ", ".join(MODELS))
    parser.add_argument("--jobs", type=int, default=2, help="model processes at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per model process")
    parser.add_argument("--holdout", type=float, default=0.25, help="share of each cohort held out")
    parser.add_argument("--seed", type=int, default=0, help="the train/holdout split's seed")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds before a model process is stopped")
    parser.add_argument("--child", choices=MODELS + (REFERENCE,), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data, args.epochs, args.ddpm_epochs, args.threads)))
        return
    cohorts = parse_list(args.cohorts, COHORTS)
    models = [REFERENCE] + parse_list(args.models, MODELS, "hpcsynth-")
    import torch

    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {platform.platform()}  {platform.machine()}  {os.cpu_count()} CPUs  "
          f"torch {torch.__version__} threads {args.threads} per model, {args.jobs} models at a time  epochs "
          f"{args.epochs} (TabDDPM {args.ddpm_epochs})  load average "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    started = time.perf_counter()
    per_cohort: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="hpcsynth-quality-") as folder:
        prepared, paths = {}, {}
        for name in cohorts:  # each cohort is split once; every model process reads this split
            prepared[name] = prepare(name, args.holdout, args.seed)
            paths[name] = Path(folder) / f"{name}.pkl"
            with open(paths[name], "wb") as handle:
                pickle.dump(prepared[name], handle)
        tasks = sorted(((c, m) for c in cohorts for m in models), key=lambda t: -COST[t[1]] * SIZE[t[0]])
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {task: pool.submit(launch, task[1], paths[task[0]], args) for task in tasks}
            done = {task: future.result() for task, future in futures.items()}
    for name in cohorts:
        data, results = prepared[name], [done[(name, m)] for m in models]
        per_cohort[name] = results
        train = data["train"]
        leaks = f", without {', '.join(data['leaks'])}" if data["leaks"] else ""
        print(f"\n{name}: {data['rows_loaded']} rows, {len(train) + len(data['holdout'])} complete in their "
              f"continuous columns; train {len(train)}, holdout {len(data['holdout'])}; {train.shape[1]} columns "
              f"({len(data['discrete'])} discrete); TSTR target {data['event']} (train rate "
              f"{train[data['event']].mean():.2f}{leaks})")
        print(table(results))
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at the end "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    print(ratio_line(per_cohort))


if __name__ == "__main__":
    main()
