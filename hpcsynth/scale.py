"""Scaling studies: one job at each rank count, the per-round times from the run files, efficiency, and an
alpha-beta model of the allreduce fitted to the measurements and projected to 1,024 sites.

Strong scaling keeps the consortium fixed (`data.n_patients` patients in all, split over p sites); weak scaling
keeps each site's size fixed (`data.n_patients / ranks[0]` patients per site, so the smallest run is the same
in both modes). Sites are simulated from the built-in cohort, the only source that can be cut into any number
of sites. At p = 1 the job runs as one site (`data.n_sites: 1`) under `mpiexec -n 1`. The model is
`AlphaBeta`; how a round is projected from it is `Projection`.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import yaml
from numpy.typing import ArrayLike
from scipy.optimize import nnls

from hpcsynth.config import load
from hpcsynth.messages import ConfigError
from hpcsynth.submit import JobSpec, submit_sbatch, wait

PROJECT_TO = 1024


@dataclass(frozen=True)
class AlphaBeta:
    """Allreduce cost of n bytes over p ranks, in seconds: Rabenseifner's reduce-scatter + allgather (MPICH's
    choice for large buffers, Thakur et al. 2005):

        t(p, n) = 2 log2(p) alpha + 2 (p - 1) / p n beta

    alpha the per-message latency, beta the time per byte (the local reduction is folded into beta). `fit`
    uses the measured communication time per allreduce call of every run with p > 1. The run files' `comm_s`
    is everything between the end of a site's local steps and the end of the exchange, so the fit also absorbs
    the wait for the slowest site at the round's barrier: on an oversubscribed machine this is most of it, and
    the projection is then pessimistic about communication."""

    alpha: float
    beta: float

    def __call__(self, p: ArrayLike, nbytes: ArrayLike) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        return 2 * np.log2(p) * self.alpha + 2 * (p - 1) / p * np.asarray(nbytes, dtype=float) * self.beta

    @classmethod
    def fit(cls, p: ArrayLike, nbytes: ArrayLike, seconds: ArrayLike) -> AlphaBeta:
        """Non-negative least squares over the measured (p, n, t) points with p > 1 (at p = 1 there is no
        exchange); at least one such point is needed."""
        p, nbytes, seconds = (np.asarray(a, dtype=float) for a in (p, nbytes, seconds))
        keep = p > 1
        if not keep.any():
            raise ValueError("fitting the allreduce model needs a run with more than one rank")
        design = np.column_stack([2 * np.log2(p[keep]), 2 * (p[keep] - 1) / p[keep] * nbytes[keep]])
        (alpha, beta), _ = nnls(design, seconds[keep])
        return cls(float(alpha), float(beta))


def study_configs(config: Path, ranks: list[int], mode: str, folder: Path) -> list[Path]:
    """One job file per rank count in `folder` (outputs `folder/<mode>-p<p>.h5`)."""
    if mode not in ("strong", "weak"):
        raise ValueError(f"--mode: expected strong or weak, got {mode!r}")
    if not ranks or min(ranks) < 1:
        raise ValueError(f"--ranks: expected positive rank counts, got {ranks}")
    cfg = load(config)
    if cfg.data.builtin is None:
        raise ConfigError(f"{config}: scaling studies simulate sites from the built-in cohort (data.builtin)")
    if len(cfg.strategies) != 1 or cfg.strategies[0] == "isolated":
        raise ConfigError(f"{config}: a scaling study runs one exchanging strategy (fedavg or centralized), "
                          f"got {cfg.strategies}")
    base = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    folder.mkdir(parents=True, exist_ok=True)
    per_site = cfg.data.n_patients / min(ranks)
    paths = []
    for p in ranks:
        job = yaml.safe_load(yaml.safe_dump(base))
        job["data"]["n_sites"] = p
        job["data"]["n_patients"] = cfg.data.n_patients if mode == "strong" else int(round(per_site * p))
        job["output"] = str(folder / f"{mode}-p{p}.h5")
        job["progress"] = False
        path = folder / f"{mode}-p{p}.yaml"
        path.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
        paths.append(path)
    return paths


def mpiexec() -> str:
    """The launcher next to this Python (the mpich wheel's), else `mpiexec` from PATH."""
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.exists() else "mpiexec"


def run_local(configs: list[Path], ranks: list[int]) -> None:
    """Run each job under `mpiexec -n p` on this machine, one after the other."""
    for path, p in zip(configs, ranks):
        command = [mpiexec(), "-n", str(p), sys.executable, "-m", "hpcsynth.cli", "run", str(path)]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if done.returncode != 0:
            raise ChildProcessError(f"the run on {p} ranks failed:\n{done.stderr.strip()}")


def run_slurm(configs: list[Path], ranks: list[int], spec: JobSpec, folder: Path) -> list[str]:
    """Submit one SLURM job per rank count (an array cannot vary its size), then wait for all of them.
    `spec.ntasks_per_node` caps the ranks per node; the nodes follow from it."""
    jobs = []
    for path, p in zip(configs, ranks):
        per_node = min(p, spec.ntasks_per_node)
        if p % per_node:
            raise ValueError(f"--ranks: {p} ranks do not fill nodes of {per_node} tasks")
        sized = replace(spec, nodes=p // per_node, ntasks_per_node=per_node, job_name=f"{spec.job_name}-p{p}")
        jobs.append(submit_sbatch(sized, [path], folder))
    for job_id, p in zip(jobs, ranks):
        failed = [s for s in wait(job_id) if s.state != "COMPLETED"]
        if failed:
            raise ChildProcessError(f"the SLURM job on {p} ranks ({job_id}) ended {failed[0].state}")
    return jobs


def _calls_per_round(strategy: str, steps: int) -> int:
    """Allreduce calls of the parameter buffer per round: fedavg averages once, centralized every step."""
    return steps if strategy == "centralized" else 1


def measure(paths: list[Path]) -> pd.DataFrame:
    """One row per run file: ranks and the median per-round times (the first round, which pays for MPI's
    connection set-up and the first allocations, is left out when there are more)."""
    rows = []
    for path in paths:
        with h5py.File(path, "r") as f:
            if f.attrs.get("status") != "complete":
                raise ValueError(f"{path}: not a complete run file")
            rounds = f["rounds"][()]
            strategy, p = str(f.attrs["strategy"]), int(f.attrs["n_sites"])
        steady = rounds[1:] if len(rounds) > 1 else rounds
        calls = _calls_per_round(strategy, int(steady["steps"][0]))
        rows.append({"ranks": p, "strategy": strategy, "round_s": float(np.median(steady["wall_s"])),
                     "compute_s": float(np.median(steady["compute_s"])),
                     "comm_s": float(np.median(steady["comm_s"])), "calls": calls,
                     "bytes_per_call": float(np.median(steady["bytes_reduced"])) / calls})
    return pd.DataFrame(rows).sort_values("ranks", ignore_index=True)


@dataclass(frozen=True)
class Projection:
    """Round time and efficiency at any rank count, from the smallest run's compute and the fitted model.

    A projected round at p sites is compute + calls x t(p, n): compute as measured at the smallest p0 (each
    site on its own hardware: weak) or that divided by p / p0 (strong), `calls` and n from the run files (one
    call of the whole parameter buffer per round for fedavg, one per local step for centralized). It is a
    projection from a few points on one machine, not a measurement."""

    mode: str
    model: AlphaBeta
    p0: int
    compute0: float
    round0: float
    calls: int
    nbytes: float

    def round_s(self, p: ArrayLike) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        compute = self.compute0 * (self.p0 / p if self.mode == "strong" else 1.0)
        return compute + self.calls * self.model(p, self.nbytes)

    def efficiency(self, p: ArrayLike) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        scale = p / self.p0 if self.mode == "strong" else 1.0
        return self.round0 / (scale * self.round_s(p))


def efficiency(table: pd.DataFrame, mode: str) -> np.ndarray:
    """Measured efficiency against the smallest run: T0 / T(p) (weak), T0 p0 / (p T(p)) (strong)."""
    first = table.iloc[0]
    scale = table["ranks"] / first["ranks"] if mode == "strong" else 1.0
    return (first["round_s"] / (scale * table["round_s"])).to_numpy()


def project(table: pd.DataFrame, mode: str) -> Projection:
    """The model fitted to the table's runs, projected from its smallest run and its largest run's buffer."""
    model = AlphaBeta.fit(table["ranks"], table["bytes_per_call"], table["comm_s"] / table["calls"])
    first = table.iloc[0]
    return Projection(mode, model, int(first["ranks"]), float(first["compute_s"]),
                      float(first["compute_s"] + first["calls"] * model(first["ranks"], first["bytes_per_call"])),
                      int(table["calls"].iloc[-1]), float(table["bytes_per_call"].iloc[-1]))


def plot(table: pd.DataFrame, projection: Projection, out: Path, title: str) -> Path:
    """Two panels on one figure: round time (measured parts, modelled total to 1,024 sites) and efficiency
    (measured, projected)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.unique(np.round(np.logspace(0, math.log2(PROJECT_TO), 60, base=2)).astype(int))
    grid = grid[grid >= projection.p0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    p = table["ranks"]
    left.plot(p, table["round_s"], "o", color="k", label="round (measured)")
    left.plot(p, table["compute_s"], "s", color="tab:blue", label="compute (measured)")
    left.plot(p, table["comm_s"], "^", color="tab:red", label="comm (measured)")
    left.plot(grid, projection.round_s(grid), "--", color="k", label="round (projected)")
    exchanging = grid[grid > 1]
    left.plot(exchanging, projection.calls * projection.model(exchanging, projection.nbytes), ":",
              color="tab:red", label="allreduce model")
    t_max = float(projection.round_s(PROJECT_TO))
    left.annotate(f"{t_max * 1e3:.1f} ms at {PROJECT_TO}", (PROJECT_TO, t_max), textcoords="offset points",
                  xytext=(-75, -14), fontsize=8)
    left.set(xscale="log", yscale="log", xlabel="sites (MPI ranks)", ylabel="seconds per round")
    left.set_xscale("log", base=2)
    left.legend(fontsize=7)
    right.plot(p, efficiency(table, projection.mode), "o", color="k", label="measured")
    right.plot(grid, projection.efficiency(grid), "--", color="k", label="projected")
    right.set_xscale("log", base=2)
    right.set(xlabel="sites (MPI ranks)", ylabel=f"{projection.mode} scaling efficiency", ylim=(0, 1.1))
    right.legend(fontsize=7)
    model = projection.model
    fig.suptitle(f"{title}\nallreduce t = 2 log2(p) a + 2 (p-1)/p n b, fitted: a = {model.alpha * 1e3:.3g} ms, "
                 f"b = {model.beta * 1e9:.3g} ns/byte (n = {projection.nbytes / 1e3:.0f} kB)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def study(config: Path, ranks: list[int], mode: str, folder: Path, slurm: JobSpec | None = None,
          png: Path | None = None) -> tuple[pd.DataFrame, Projection, Path]:
    """The whole study: job files, runs (local mpiexec, or SLURM jobs sized from `slurm`), the measured table
    with efficiency (also written as `folder/<mode>.csv`), the projection and the plot (`folder/<mode>.png`
    unless `png` is given)."""
    configs = study_configs(config, ranks, mode, folder)
    if slurm is None:
        run_local(configs, ranks)
    else:
        run_slurm(configs, ranks, slurm, folder)
    table = measure([folder / f"{mode}-p{p}.h5" for p in ranks])
    projection = project(table, mode)
    table["efficiency"] = efficiency(table, mode)
    table.to_csv(folder / f"{mode}.csv", index=False)
    png = plot(table, projection, png or folder / f"{mode}.png", f"{mode} scaling, {table['strategy'].iloc[0]}")
    return table, projection, png
