"""Scaling studies: one job at each rank count, the per-round times and peak memory from the run files,
efficiency, and an alpha-beta model of the allreduce fitted to the measurements and projected to 1,024 sites.

Every row `measure` returns is measured; the model's residual at each measured point (measured minus fitted
communication time) is reported beside it, and the rank counts beyond the largest run are projections, labelled
as such in `report`'s table and in the plot. Under SLURM a run may be spread over several nodes (`layout`); on
the local cluster these are emulated nodes, one slurmd each on the same machine (slurm/local-cluster.sh).

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
from typing import TYPE_CHECKING

import h5py
import numpy as np
import pandas as pd
import yaml
from numpy.typing import ArrayLike
from scipy.optimize import nnls

from hpcsynth.config import load
from hpcsynth.messages import ConfigError
from hpcsynth.submit import JobSpec, submit_sbatch, wait

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


def layout(p: int, spec: JobSpec) -> tuple[int, int]:
    """(nodes, ranks per node) of the run on `p` ranks. With `spec.nodes` > 1 the ranks are spread evenly over
    that many nodes (fewer when p is smaller); otherwise `spec.ntasks_per_node` caps the ranks per node and the
    nodes follow from it."""
    if spec.nodes > 1:
        nodes = min(spec.nodes, p)
        if p % nodes:
            raise ValueError(f"--ranks: {p} ranks do not split evenly over --nodes {nodes}")
        return nodes, p // nodes
    per_node = min(p, spec.ntasks_per_node)
    if p % per_node:
        raise ValueError(f"--ranks: {p} ranks do not fill nodes of {per_node} tasks")
    return p // per_node, per_node


def run_slurm(configs: list[Path], ranks: list[int], spec: JobSpec, folder: Path) -> list[str]:
    """One SLURM job per rank count (an array cannot vary its size), each sized by `layout`, submitted when the
    previous one has ended: runs that share nodes (or a machine's emulated nodes) would otherwise time each
    other's contention."""
    sizes = [layout(p, spec) for p in ranks]  # every size checked before anything is submitted
    jobs = []
    for path, p, (nodes, per_node) in zip(configs, ranks, sizes):
        sized = replace(spec, nodes=nodes, ntasks_per_node=per_node, job_name=f"{spec.job_name}-p{p}")
        job_id = submit_sbatch(sized, [path], folder)
        jobs.append(job_id)
        failed = [s for s in wait(job_id) if s.state != "COMPLETED"]
        if failed:
            raise ChildProcessError(f"the SLURM job on {p} ranks ({job_id}) ended {failed[0].state}")
    return jobs


def _calls_per_round(strategy: str, steps: int) -> int:
    """Allreduce calls of the parameter buffer per round: fedavg averages once, centralized every step."""
    return steps if strategy == "centralized" else 1


def _peak_memory(rounds: np.ndarray) -> float:
    """The largest peak resident memory of any rank over the run, in MB (NaN for files that predate it)."""
    if "max_rss_mb" not in (rounds.dtype.names or ()) or not (rounds["max_rss_mb"] > 0).any():
        return float("nan")
    return float(rounds["max_rss_mb"].max())


def measure(paths: list[Path]) -> pd.DataFrame:
    """One row per run file: ranks, the median per-round times (the first round, which pays for MPI's
    connection set-up and the first allocations, is left out when there are more) and the largest peak memory
    of any rank."""
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
                     "bytes_per_call": float(np.median(steady["bytes_reduced"])) / calls,
                     "max_rss_mb": _peak_memory(rounds)})
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


def residuals(table: pd.DataFrame, model: AlphaBeta) -> tuple[np.ndarray, np.ndarray]:
    """(fitted, residual) communication seconds per round at each measured point: calls x t(p, n), and the
    measured `comm_s` minus it (0 fitted at p = 1, where nothing is exchanged)."""
    fitted = table["calls"].to_numpy() * model(table["ranks"], table["bytes_per_call"])
    return fitted, table["comm_s"].to_numpy() - fitted


def projected_ranks(table: pd.DataFrame) -> np.ndarray:
    """The rank counts `report` projects to: powers of two above the largest run, up to `PROJECT_TO`."""
    largest = int(table["ranks"].max())
    return np.array([2 ** k for k in range(1, int(math.log2(PROJECT_TO)) + 1) if 2 ** k > largest], dtype=int)


def report(table: pd.DataFrame, projection: Projection) -> pd.DataFrame:
    """The measured rows (`point` = "measured") followed by the model's rows beyond the largest run (`point` =
    "projected"): round time, communication and efficiency only, since nothing else of them is known."""
    measured = table.assign(point="measured")
    ahead = projected_ranks(table)
    model = projection.calls * projection.model(ahead, projection.nbytes)
    projected = pd.DataFrame({"ranks": ahead, "point": "projected", "round_s": projection.round_s(ahead),
                              "comm_s": model, "efficiency": projection.efficiency(ahead)})
    out = pd.concat([measured, projected], ignore_index=True)
    return out[["point"] + [c for c in out.columns if c != "point"]]


def figure(table: pd.DataFrame, projection: Projection, title: str) -> Figure:
    """Three panels on one figure: round time (measured parts, modelled total to 1,024 sites), efficiency
    (measured, projected) and the allreduce model's residual at each measured point. The range beyond the
    largest run is shaded and every curve there is labelled a projection. Returns the matplotlib figure."""
    from matplotlib.figure import Figure

    grid = np.unique(np.round(np.logspace(0, math.log2(PROJECT_TO), 60, base=2)).astype(int))
    grid = grid[grid >= projection.p0]
    fig = Figure(figsize=(13, 3.8), dpi=100)
    left, right, third = fig.subplots(1, 3)
    p = table["ranks"]
    largest = float(p.max())
    for axis in (left, right):
        axis.axvspan(largest, PROJECT_TO, color="0.92", zorder=0)
        axis.text(math.sqrt(largest * PROJECT_TO), 0.97, "projection\n(not measured)", ha="center", va="top",
                  transform=axis.get_xaxis_transform(), fontsize=7, color="0.35")
    left.plot(p, table["round_s"], "o", color="k", label="round (measured)")
    left.plot(p, table["compute_s"], "s", color="tab:blue", label="compute (measured)")
    left.plot(p, table["comm_s"], "^", color="tab:red", label="comm (measured)")
    left.plot(grid, projection.round_s(grid), "--", color="k", label="round (model; projected beyond the runs)")
    exchanging = grid[grid > 1]
    left.plot(exchanging, projection.calls * projection.model(exchanging, projection.nbytes), ":",
              color="tab:red", label="allreduce model (fitted)")
    t_max = float(projection.round_s(PROJECT_TO))
    left.annotate(f"projected: {t_max * 1e3:.1f} ms at {PROJECT_TO}", (PROJECT_TO, t_max), textcoords="offset points",
                  xytext=(-110, -14), fontsize=8)
    left.set(xscale="log", yscale="log", xlabel="sites (MPI ranks)", ylabel="seconds per round")
    left.set_xscale("log", base=2)
    left.legend(fontsize=7)
    right.plot(p, efficiency(table, projection.mode), "o", color="k", label="measured")
    right.plot(grid, projection.efficiency(grid), "--", color="k", label="model (projected beyond the runs)")
    right.set_xscale("log", base=2)
    right.set(xlabel="sites (MPI ranks)", ylabel=f"{projection.mode} scaling efficiency", ylim=(0, 1.1))
    right.legend(fontsize=7)
    _, residual = residuals(table, projection.model)
    third.axhline(0.0, color="0.5", lw=0.8)
    third.plot(p, residual * 1e3, "o", color="tab:red", label="measured - fitted comm")
    for x, y in zip(p, residual * 1e3):
        third.annotate(f"{y:+.2g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    third.set_xscale("log", base=2)
    third.set(xlabel="sites (MPI ranks), measured only", ylabel="residual, ms per round",
              title="alpha-beta fit residuals", xticks=list(p), xticklabels=[str(int(x)) for x in p])
    third.legend(fontsize=7)
    model = projection.model
    fig.suptitle(f"{title}\nallreduce t = 2 log2(p) a + 2 (p-1)/p n b, fitted: a = {model.alpha * 1e3:.3g} ms, "
                 f"b = {model.beta * 1e9:.3g} ns/byte (n = {projection.nbytes / 1e3:.0f} kB)", fontsize=9)
    fig.tight_layout()
    return fig


def plot(table: pd.DataFrame, projection: Projection, out: Path, title: str) -> Path:
    """`figure` written as a PNG to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    figure(table, projection, title).savefig(out)
    return out


def study(config: Path, ranks: list[int], mode: str, folder: Path, slurm: JobSpec | None = None,
          png: Path | None = None) -> tuple[pd.DataFrame, Projection, Path]:
    """The whole study: job files, runs (local mpiexec, or SLURM jobs sized from `slurm` by `layout`), the
    measured table with the nodes of each run, efficiency and the model's residuals (also written as
    `folder/<mode>.csv`), the projection and the plot (`folder/<mode>.png` unless `png` is given)."""
    configs = study_configs(config, ranks, mode, folder)
    if slurm is None:
        run_local(configs, ranks)
    else:
        run_slurm(configs, ranks, slurm, folder)
    table = measure([folder / f"{mode}-p{p}.h5" for p in ranks])
    by_ranks = {p: layout(p, slurm)[0] if slurm is not None else 1 for p in ranks}
    table.insert(1, "nodes", [by_ranks[int(p)] for p in table["ranks"]])
    projection = project(table, mode)
    table["efficiency"] = efficiency(table, mode)
    table["comm_fit_s"], table["comm_residual_s"] = residuals(table, projection.model)
    table.to_csv(folder / f"{mode}.csv", index=False)
    measured = ", ".join(str(p) for p in table["ranks"])
    title = (f"{mode} scaling, {table['strategy'].iloc[0]}: measured at p = {measured} on up to "
             f"{int(table['nodes'].max())} node(s)")
    png = plot(table, projection, png or folder / f"{mode}.png", title)
    return table, projection, png
