"""TabDDPM's samplers: the few-step deterministic sampler (DDIM) against the 1,000-step ancestral chain.

One TabDDPM per cohort (flchain and the MDS cohort, split as benchmarks/quality.py splits them) trains once;
the same trained model then samples as many rows as its training split with each sampler and each seed. Each
table is scored as every table of the project is: the consortium-level `quality` of `hpcsynth.evaluate` against
the held-out rows (one process: the pooled figure). Prints per cohort and sampler the sampling seconds and the
quality (mean and seed-to-seed standard deviation, and the difference from the 1,000-step sampler); the last line
is the ratio of the default sampler's wall time to the 1,000-step sampler's.

    python benchmarks/ddpm_sampler.py [--epochs 300] [--seeds 0,1,2] [--cohorts flchain,mds]
                                    [--samplers ddim:20,ddim:50,ancestral:50]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
from quality import prepare  # benchmarks/quality.py: the cohorts' splits every benchmark shares

REFERENCE = ("ancestral", None)  # all of the chain's steps


def score(synthetic, data: dict, transformer) -> float:
    """The consortium-level quality of one table against the held-out rows."""
    from hpcsynth.comm import SoloComm
    from hpcsynth.data.cohorts import COHORTS
    from hpcsynth.evaluate.suite import EvalSpec, evaluate

    spec = EvalSpec.default(transformer, COHORTS.get(data["name"]))
    found = evaluate(synthetic, data["train"], data["holdout"], transformer, SoloComm(), spec, metrics=["quality"])
    return float(found.scores["quality"])


def compare(name: str, samplers: list[tuple[str, int | None]], seeds: list[int], epochs: int) -> list[dict]:
    """Train one model on the cohort, then sample and score with every (sampler, steps) and seed."""
    from hpcsynth.data.transformer import TableTransformer
    from hpcsynth.models import TabDDPM

    data = prepare(name, 0.25, 0)
    model = TabDDPM(epochs=epochs, device="cpu", seed=0, categorical=data["categorical"], time=data["time"],
                    event=data["event"])
    start = time.perf_counter()
    model.fit(data["train"])
    print(f"{name}: {len(data['train'])} training rows, {len(data['holdout'])} held out; fit {epochs} epochs in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    transformer = TableTransformer(data["categorical"], data["time"], data["event"]).fit(data["train"])
    rows = []
    for sampler, steps in samplers:
        model.sampler, model.sample_steps = sampler, steps
        for seed in seeds:
            start = time.perf_counter()
            synthetic = model.sample(len(data["train"]), seed=seed)
            seconds = time.perf_counter() - start
            rows.append({"cohort": name, "sampler": sampler, "steps": steps or model.diffusion_steps, "seed": seed,
                         "sample_s": seconds, "quality": score(synthetic, data, transformer)})
            print(f"  {sampler:9s} {rows[-1]['steps']:5d} steps, seed {seed}: {seconds:6.1f} s, quality "
                  f"{rows[-1]['quality']:.4f}", flush=True)
    return rows


def main() -> None:
    import pandas as pd
    import torch

    from hpcsynth.models import TabDDPM

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seeds", default="0,1,2", help="sampling seeds (one trained model per cohort)")
    parser.add_argument("--cohorts", default="flchain,mds")
    parser.add_argument("--samplers", default="ddim:20,ddim:50,ancestral:50",
                        help="the few-step samplers to compare, as sampler:steps")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    default = TabDDPM()
    fast = [(s.split(":")[0], int(s.split(":")[1])) for s in args.samplers.split(",")]
    samplers = [REFERENCE, *fast]
    if (default.sampler, default.sample_steps) not in samplers:
        samplers.append((default.sampler, default.sample_steps))
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {platform.machine()}  {os.cpu_count()} CPUs, no GPU  torch "
          f"threads {args.threads}  epochs {args.epochs}  seeds {args.seeds}  load average {os.getloadavg()[0]:.1f}")
    seeds = [int(s) for s in args.seeds.split(",")]
    table = pd.DataFrame([r for name in args.cohorts.split(",") for r in compare(name, samplers, seeds, args.epochs)])
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    summary = table.groupby(["cohort", "sampler", "steps"], sort=False).agg(
        sample_s=("sample_s", "mean"), quality=("quality", "mean"), quality_sd=("quality", "std"))
    for cohort, part in summary.groupby(level="cohort", sort=False):
        reference = part.loc[(cohort, *REFERENCE[:1], default.diffusion_steps), "quality"]
        summary.loc[part.index, "quality_vs_1000"] = part["quality"] - reference
    with pd.option_context("display.width", 200):
        print(summary.round(4).to_string())
    chosen = summary.xs((default.sampler, default.sample_steps or default.diffusion_steps), level=("sampler", "steps"))
    slow = summary.xs((REFERENCE[0], default.diffusion_steps), level=("sampler", "steps"))
    within = bool((chosen["quality_vs_1000"].abs() <= 0.01).all())
    print(f"default sampler {default.sampler} {default.sample_steps} steps: quality within 0.01 of the 1,000-step "
          f"sampler on every cohort: {within} (largest gap {chosen['quality_vs_1000'].abs().max():.4f})")
    ratio = float(np.sum(chosen["sample_s"]) / np.sum(slow["sample_s"]))
    print(f"sampling wall time ratio (default {default.sampler} {default.sample_steps} steps / ancestral "
          f"{default.diffusion_steps} steps): {ratio:.3f}")


if __name__ == "__main__":
    main()
