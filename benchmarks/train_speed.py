"""Training speed and quality: hpcsynth's CTGAN and TVAE against SDV's `ctgan` package (CTGAN, TVAE).

Every model trains in a process of its own on the MDS cohort, with the same epochs, batch size, network sizes
and CPU threads; seconds per epoch, the one-off transform fit and compile, and SDMetrics' quality are reported
(how each is timed: benchmarks/README.md). The last lines are the speed ratios (SDV seconds per epoch /
hpcsynth seconds per epoch).

With `--whole-fit`, what a user waits for instead: the whole `fit` wall time (transform, compile and every
epoch) of each model on flchain's training rows (complete cases, as benchmarks/quality.py splits them), at each
of `--whole-fit-epochs`, hpcsynth's twice: with a cold compile cache (a fresh directory) and then warm (a second
process on the same directory). The last line is hpcsynth's wall time over SDV's at 300 epochs, cold cache.

    python benchmarks/train_speed.py [--epochs 100] [--threads 1] [--patients 4427] [--compile on|auto|off]
    python benchmarks/train_speed.py --whole-fit [--whole-fit-epochs 100,300] [--compile auto]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings

RUNS = ("sdv-ctgan", "hpcsynth-ctgan", "sdv-tvae", "hpcsynth-tvae")
CACHE_ENV = "HPCSYNTH_COMPILE_CACHE"  # hpcsynth.models.compiled's cache directory (not imported: children time it)


def cohort(patients: int):
    """The MDS cohort's complete cases, its discrete columns and its declared categorical columns."""
    from hpcsynth.data.mds import MDS_METADATA, simulate_mds
    from hpcsynth.data.transformer import TableTransformer

    frame = simulate_mds(n_patients=patients, seed=0).drop(columns=["patient_id", "site"])
    continuous = [c for c in frame.columns if frame[c].dtype.kind == "f" and frame[c].nunique() > 2]
    frame = frame.dropna(subset=continuous).reset_index(drop=True)
    schema = TableTransformer(MDS_METADATA["categorical"]).fit(frame).schema_
    discrete = [s.name for s in schema if s.kind in ("categorical", "binary")]
    return frame, discrete, MDS_METADATA["categorical"]


def flchain():
    """flchain's training rows (complete cases), its discrete columns and its declared categorical columns."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from quality import prepare  # benchmarks/quality.py: the split every benchmark shares

    data = prepare("flchain", 0.25, 0)
    return data["train"], data["discrete"], data["categorical"]


def quality(real, synthetic, discrete) -> float:
    from sdmetrics.reports.single_table import QualityReport

    metadata = {"columns": {c: {"sdtype": "categorical" if c in discrete else "numerical"} for c in real.columns}}
    report = QualityReport()
    report.generate(real, synthetic[real.columns], metadata, verbose=False)
    return float(report.get_score())


def run_sdv(kind: str, frame, discrete, epochs: int) -> tuple[list[float], float, object]:
    """Train SDV's model; per-epoch times from the tqdm that wraps its epoch loop."""
    import ctgan
    from ctgan.synthesizers import ctgan as ctgan_module
    from ctgan.synthesizers import tvae as tvae_module

    stamps: list[tuple[float, float]] = []

    def timed_range(iterable, *args, **kwargs):
        for item in iterable:
            stamps.append((time.perf_counter(), time.process_time()))
            yield item
        stamps.append((time.perf_counter(), time.process_time()))

    for module in (ctgan_module, tvae_module):
        module.tqdm = timed_range
    if kind == "ctgan":
        model = ctgan.CTGAN(epochs=epochs, batch_size=500, embedding_dim=128, generator_dim=(256, 256),
                            discriminator_dim=(256, 256), pac=10)
    else:
        model = ctgan.TVAE(epochs=epochs, batch_size=500, embedding_dim=128, compress_dims=(128, 128),
                           decompress_dims=(128, 128), l2scale=1e-5, loss_factor=2)
    start = time.perf_counter()
    model.fit(frame, discrete_columns=discrete)
    total = time.perf_counter() - start
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(stamps[:-1], stamps[1:])], total, model


def run_hpcsynth(kind: str, frame, categorical: list[str], epochs: int,
                 compile: str = "on") -> tuple[list[float], float, object]:
    """Train hpcsynth's model; per-epoch times from its `local_update` (one call per epoch in `fit`). Both train
    with bfloat16 matrix products where the CPU has them (`precision="auto"`, CTGAN's default)."""
    from hpcsynth.models import CTGAN, TVAE

    if kind == "ctgan":
        model = CTGAN(epochs=epochs, batch_size=500, embedding_dim=128, generator_dim=(256, 256),
                      discriminator_dim=(256, 256), pac=10, categorical=categorical, device="cpu",
                      precision="auto", compile=compile)
    else:
        model = TVAE(epochs=epochs, batch_size=500, latent_dim=128, hidden=(128, 128), lr=1e-3, weight_decay=1e-5,
                     loss_factor=2.0, categorical=categorical, device="cpu", precision="auto",
                     compile=compile)
    durations: list[tuple[float, float]] = []
    update = model.local_update

    def timed_update(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        loss = update(*args, **kwargs)
        durations.append((time.perf_counter() - wall, time.process_time() - cpu))
        return loss

    model.local_update = timed_update
    start = time.perf_counter()
    model.fit(frame)
    return durations, time.perf_counter() - start, model


def child(run: str, epochs: int, threads: int, patients: int, compile: str, whole_fit: bool = False) -> dict:
    """One model in this process: train, sample, score (not in a whole-fit run); a JSON line for the parent."""
    import numpy as np
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    frame, discrete, categorical = flchain() if whole_fit else cohort(patients)
    library, kind = run.split("-")
    if library == "sdv":
        durations, total, model = run_sdv(kind, frame, discrete, epochs)
    else:
        durations, total, model = run_hpcsynth(kind, frame, categorical, epochs, compile)
    wall, cpu = np.median(np.array(durations), axis=0)
    extra = {"precision": "bf16" if getattr(model, "bf16_", False) else "fp32",
             "compile_s": getattr(model, "compile_s_", 0.0),
             "compiled": any(getattr(f, "compiled", False) for f in getattr(model, "_compiled", {}).values())}
    score = float("nan") if whole_fit else quality(frame, model.sample(len(frame)), discrete)
    return {"run": run, "rows": len(frame), "epochs": len(durations), "s_per_epoch": float(wall),
            "cpu_s_per_epoch": float(cpu), "fit_s": total, "outside_epochs_s": total - sum(d[0] for d in durations),
            "quality": score, **extra}


def launch(run: str, epochs: int, args: argparse.Namespace, cache: str | None = None) -> dict:
    """One model in a process of its own (with `cache` as its compile cache directory); its JSON line."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if cache is not None:
        env[CACHE_ENV] = cache
        env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    command = [sys.executable, __file__, "--child", run, "--epochs", str(epochs), "--threads", str(args.threads),
               "--patients", str(args.patients), "--compile", args.compile, *(["--whole-fit"] * args.whole_fit)]
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def whole_fit(args: argparse.Namespace) -> None:
    """The whole-fit comparison (module docstring): per epochs, SDV's two models, then hpcsynth's with a cold and
    a warm compile cache; hpcsynth's wall time over SDV's for each."""
    rows = []
    for epochs in [int(e) for e in args.whole_fit_epochs.split(",")]:
        with tempfile.TemporaryDirectory(prefix="hpcsynth-compile-") as cache:
            for kind in ("ctgan", "tvae"):
                sdv = launch(f"sdv-{kind}", epochs, args)
                rows.append({"epochs": epochs, "model": f"sdv-{kind}", "cache": "", **sdv, "ratio": 1.0})
                for state in ("cold", "warm"):
                    ours = launch(f"hpcsynth-{kind}", epochs, args, cache)
                    rows.append({"epochs": epochs, "model": f"hpcsynth-{kind}", "cache": state, **ours,
                                 "ratio": ours["fit_s"] / sdv["fit_s"]})
                    print(f"  {epochs} epochs {kind} {state}: {ours['fit_s']:.1f} s against SDV {sdv['fit_s']:.1f} s",
                          file=sys.stderr, flush=True)
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    print(f"flchain training rows, complete cases: {rows[0]['rows']} rows; batch 500; whole fit wall time")
    print(f"{'epochs':>6s} {'model':15s} {'cache':5s} {'fit s':>7s} {'compile s':>9s} {'compiled':>8s} "
          f"{'x SDV':>6s}")
    for r in rows:
        print(f"{r['epochs']:6d} {r['model']:15s} {r['cache']:5s} {r['fit_s']:7.1f} {r['compile_s']:9.1f} "
              f"{str(r['compiled']):>8s} {r['ratio']:6.3f}")
    last = max(r["epochs"] for r in rows)
    cold = {r["model"].split("-")[1]: r["ratio"] for r in rows if r["epochs"] == last and r["cache"] == "cold"}
    print(f"whole-fit wall time ratio (hpcsynth / SDV, cold compile cache, {last} epochs; target <= 0.2): "
          f"CTGAN {cold['ctgan']:.3f}  TVAE {cold['tvae']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--patients", type=int, default=4427)
    parser.add_argument("--compile", choices=("on", "auto", "off"), default="on",
                        help="hpcsynth's torch.compile of its training steps (on: whatever the epochs)")
    parser.add_argument("--whole-fit", action="store_true",
                        help="whole fit wall times on flchain, cold and warm compile cache, against SDV")
    parser.add_argument("--whole-fit-epochs", default="100,300")
    parser.add_argument("--child", choices=RUNS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.epochs, args.threads, args.patients, args.compile, args.whole_fit)))
        return
    load = os.getloadavg()[0]
    epochs = args.whole_fit_epochs if args.whole_fit else args.epochs
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {platform.machine()}  {os.cpu_count()} CPUs  torch threads "
          f"{args.threads}  epochs {epochs}  hpcsynth compile {args.compile}  load average {load:.1f}")
    if args.whole_fit:
        whole_fit(args)
        return
    results = {run: launch(run, args.epochs, args) for run in RUNS}
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    first = results[RUNS[0]]
    print(f"MDS cohort, complete cases: {first['rows']} rows; batch 500; CTGAN 128 + (256, 256) / (256, 256), "
          f"pac 10; TVAE 128 latent, (128, 128)")
    print(f"{'model':16s} {'s/epoch':>8s} {'cpu s/ep':>9s} {'fit s':>7s} {'other s':>8s} {'compile s':>9s} "
          f"{'quality':>8s}  precision")
    for run, r in results.items():
        mode = ", compiled" if r["compiled"] else ""
        print(f"{run:16s} {r['s_per_epoch']:8.4f} {r['cpu_s_per_epoch']:9.4f} {r['fit_s']:7.1f} "
              f"{r['outside_epochs_s']:8.1f} {r['compile_s']:9.1f} {r['quality']:8.4f}  {r['precision']}{mode}")
    ratios = {}
    for kind in ("ctgan", "tvae"):
        sdv, ours = results[f"sdv-{kind}"], results[f"hpcsynth-{kind}"]
        ratios[kind] = (sdv["s_per_epoch"] / ours["s_per_epoch"], sdv["cpu_s_per_epoch"] / ours["cpu_s_per_epoch"])
        print(f"{kind}: hpcsynth {ratios[kind][0]:.1f}x faster per epoch ({ratios[kind][1]:.1f}x in CPU time); "
              f"quality {ours['quality']:.4f} vs SDV {sdv['quality']:.4f} ({ours['quality'] - sdv['quality']:+.4f})")
    print(f"speed ratio (SDV s/epoch / hpcsynth s/epoch, wall; target >= 5): CTGAN {ratios['ctgan'][0]:.1f}  "
          f"TVAE {ratios['tvae'][0]:.1f}")
    print(f"speed ratio in CPU time (steadier on a shared machine; target >= 5): CTGAN {ratios['ctgan'][1]:.1f}  "
          f"TVAE {ratios['tvae'][1]:.1f}")


if __name__ == "__main__":
    main()
