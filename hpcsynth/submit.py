"""Submitting hpcsynth jobs to SLURM: a thin typed layer over `sbatch`, plus plain functions.

`JobSpec` is the only type: the resources of one job (or of every task of an array). `render` fills the
directives of a template (package data of `hpcsynth.slurm`, `slurm/` in a checkout; they work as written with
`sbatch`, and rendering only writes the chosen values into their `#SBATCH` lines), `expand_grid` turns
`--array KEY=V1,V2` into one job file per combination, `submit_sbatch` submits a rendered script, and
`job_states`/`wait` follow a job through `scontrol` (no accounting database needed) and `sacct`.
Submission through submitit lives in `hpcsynth.slurm_glue`, so this module needs nothing but SLURM.
"""
from __future__ import annotations

import argparse
import itertools
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from hpcsynth.config import load
from hpcsynth.messages import ConfigError

TEMPLATES = "hpcsynth.slurm"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
            "BOOT_FAIL", "DEADLINE"}


@dataclass(frozen=True)
class JobSpec:
    """The resources of one job: ranks = nodes x ntasks_per_node, one rank per site (and per GPU)."""

    nodes: int = 1
    ntasks_per_node: int = 1
    gpus_per_task: int = 0
    cpus_per_task: int | None = None
    partition: str | None = None
    time: str = "01:00:00"
    job_name: str = "hpcsynth"
    script_template: str | None = None  # another template than cpu/gpu.sbatch (tune.sbatch: a study's workers)

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.ntasks_per_node < 1 or self.gpus_per_task < 0:
            raise ValueError(f"nodes and ntasks-per-node must be at least 1 and gpus-per-task at least 0, got "
                             f"{self.nodes}, {self.ntasks_per_node}, {self.gpus_per_task}")

    @property
    def ranks(self) -> int:
        return self.nodes * self.ntasks_per_node

    @property
    def template(self) -> str:
        """The name of the GPU template (one rank per GPU) when GPUs are asked for, else the CPU one's (unless
        `script_template` names another)."""
        if self.script_template:
            return self.script_template
        return "gpu.sbatch" if self.gpus_per_task else "cpu.sbatch"

    def directives(self) -> dict[str, str]:
        """The `#SBATCH --key=value` settings this spec fixes; the template keeps its other defaults."""
        chosen = {"job-name": self.job_name, "nodes": str(self.nodes), "ntasks-per-node": str(self.ntasks_per_node),
                  "time": self.time}
        if self.gpus_per_task:
            chosen["gpus-per-task"] = str(self.gpus_per_task)
        if self.cpus_per_task:
            chosen["cpus-per-task"] = str(self.cpus_per_task)
        if self.partition:
            chosen["partition"] = self.partition
        return chosen

    def script(self) -> str:
        """The template with this spec's directives: the batch script `submit_sbatch` submits."""
        return render(template_text(self.template), self.directives())


def template_text(name: str) -> str:
    """The text of an installed sbatch template (`cpu.sbatch`, `gpu.sbatch`)."""
    return resources.files(TEMPLATES).joinpath(name).read_text(encoding="utf-8")


def add_job_options(parser: argparse.ArgumentParser, ntasks_default: int | None, ntasks_help: str) -> None:
    """The resource options `hpcsynth submit` and `hpcsynth scale --slurm` share (named as sbatch names them)."""
    parser.add_argument("--nodes", type=int, default=1, help="nodes (default 1)")
    parser.add_argument("--ntasks-per-node", type=int, default=ntasks_default, help=ntasks_help)
    parser.add_argument("--gpus-per-task", type=int, default=0, help="GPUs per rank: uses the gpu.sbatch template")
    parser.add_argument("--cpus-per-task", type=int, help="cores per rank (default: the template's)")
    parser.add_argument("--partition", help="SLURM partition (default: the cluster's)")
    parser.add_argument("--time", default="01:00:00", help="time limit, SLURM format (default 01:00:00)")
    parser.add_argument("--job-name", default="hpcsynth", help="job name (default hpcsynth)")


def spec_from_args(args: argparse.Namespace) -> JobSpec:
    return JobSpec(nodes=args.nodes, ntasks_per_node=args.ntasks_per_node, gpus_per_task=args.gpus_per_task,
                   cpus_per_task=args.cpus_per_task, partition=args.partition, time=args.time,
                   job_name=args.job_name)


_DIRECTIVE = re.compile(r"^#SBATCH\s+--([\w-]+)(?:[= ](.*))?$")


def render(template: str, directives: dict[str, str]) -> str:
    """The template with each given directive's value replaced, or added after the last `#SBATCH` line."""
    lines = template.splitlines()
    missing = dict(directives)
    last = 0
    for i, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if match:
            last = i
            if match.group(1) in missing:
                lines[i] = f"#SBATCH --{match.group(1)}={missing.pop(match.group(1))}"
    added = [f"#SBATCH --{key}={value}" for key, value in missing.items()]
    return "\n".join(lines[:last + 1] + added + lines[last + 1:]) + "\n"


def check_ranks(configs: list[Path], spec: JobSpec) -> None:
    """Refuse, before submitting, a job whose site count differs from its rank count (it would fail later)."""
    for path in configs:
        cfg = load(path)
        sites = cfg.data.n_sites if cfg.data.sites is None else len(cfg.data.sites)
        if sites is not None and sites != spec.ranks:
            raise ConfigError(f"{path}: data defines {sites} sites but the job asks for {spec.ranks} ranks "
                              f"(nodes x ntasks-per-node; one rank per site)")


def set_option(job: dict, key: str, value: Any) -> dict:
    """Set the dotted job-file key `key` (`federation.strategy`) to `value` in a parsed job mapping, creating
    the sections it names; return the mapping. Every override of a job file (an array's grid, a tuning
    trial) goes through here, so they all address keys alike."""
    *parents, leaf = key.split(".")
    node = job
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return job


def expand_grid(config: Path, assignments: list[str], folder: Path) -> list[Path]:
    """One job file per combination of `KEY=V1,V2,...` values (dotted keys: `federation.strategy=a,b`).

    Each file's `output` gets the combination as a suffix (`runs/x.h5` -> `runs/x-strategy-fedavg.h5`), so
    the array's runs never overwrite each other. Files are written to `folder`; the list is in array order."""
    base = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    axes = []
    for item in assignments:
        key, eq, values = item.partition("=")
        if not eq or not values:
            raise ValueError(f"--array: expected KEY=V1,V2,..., got {item!r}")
        axes.append((key.strip(), [yaml.safe_load(v) for v in values.split(",")]))
    folder.mkdir(parents=True, exist_ok=True)
    output = Path(base.get("output", "runs/run.h5"))
    paths = []
    for combo in itertools.product(*[values for _, values in axes]):
        job = yaml.safe_load(yaml.safe_dump(base))  # a deep copy of plain data
        tags = []
        for (key, _), value in zip(axes, combo):
            set_option(job, key, value)
            tags.append(f"{key.rpartition('.')[2]}-{value}")
        job["output"] = str(output.with_name(f"{output.stem}-{'-'.join(tags)}{output.suffix}"))
        path = folder / f"{Path(config).stem}-{'-'.join(tags)}.yaml"
        path.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
        load(path)  # validate now: a typo in a grid value fails here, not in the queue
        paths.append(path)
    return paths


def sbatch_command(script: Path, configs: list[Path]) -> list[str]:
    """The `sbatch` call for a script and its job files: an array when there are several (task i runs the
    i-th)."""
    array = [f"--array=0-{len(configs) - 1}"] if len(configs) > 1 else []
    return ["sbatch", "--parsable", *array, str(script), *map(str, configs)]


def write_script(spec: JobSpec, folder: Path) -> Path:
    """Write the rendered template for `spec` as `folder/<job name>.sbatch`; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / f"{spec.job_name}.sbatch"
    script.write_text(spec.script(), encoding="utf-8")
    return script


def submit_sbatch(spec: JobSpec, configs: list[Path], folder: Path) -> str:
    """Render the template for `spec`, submit it with `sbatch` and return the job id; the rendered script is
    kept as `folder/<name>-<id>.sbatch`."""
    if shutil.which("sbatch") is None:
        raise OSError("sbatch not found: run on a SLURM login node (or start slurm/local-cluster.sh)")
    script = write_script(spec, folder)
    done = subprocess.run(sbatch_command(script, configs), capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"sbatch refused the job: {done.stderr.strip()}")
    job_id = done.stdout.strip().split(";")[0]
    script.rename(folder / f"{spec.job_name}-{job_id}.sbatch")
    return job_id


def _records(command: list[str]) -> list[dict[str, str]]:
    """`key=value` records, one per output line, of `scontrol -o show job` (values may contain spaces)."""
    done = subprocess.run(command, capture_output=True, text=True)
    records = []
    for line in done.stdout.splitlines() if done.returncode == 0 else []:
        record: dict[str, str] = {}
        key = None
        for token in line.split(" "):
            name, eq, value = token.partition("=")
            if eq and name.replace(":", "").isalnum():
                key, record[name] = name, value
            elif key is not None:
                record[key] += " " + token
        records.append(record)
    return records


@dataclass(frozen=True)
class JobState:
    """The state of one job or array task, as SLURM reports it."""

    job_id: str
    state: str
    restarts: int = 0
    reason: str = ""

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


def job_states(job_id: str) -> list[JobState]:
    """The state of a job, or of every task of an array, from `scontrol` or else `sacct`; [] if unknown."""
    states = []
    for r in _records(["scontrol", "-o", "show", "job", job_id]):
        task = r.get("ArrayTaskId")
        name = f"{r['ArrayJobId']}_{task}" if task else r["JobId"]
        states.append(JobState(name, r["JobState"], int(r.get("Restarts", 0)), r.get("Reason", "None")))
    if states:
        return states
    done = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", job_id], capture_output=True,
                          text=True) if shutil.which("sacct") else None
    for line in done.stdout.splitlines() if done is not None and done.returncode == 0 else []:
        name, _, state = line.partition("|")
        states.append(JobState(name, state.split(" ")[0]))  # "CANCELLED by 0" -> CANCELLED
    return states


def wait(job_id: str, timeout: float | None = None, poll: float = 1.0,
         on_change: Callable[[list[JobState]], None] | None = None) -> list[JobState]:
    """Poll until every task of the job has finished; return the final states. `on_change(states)` is called
    whenever they change (`hpcsynth status --wait` prints them); TimeoutError after `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = None
    while True:
        states = job_states(job_id)
        if states != seen and on_change is not None:
            on_change(states)
        seen = states
        if states and all(s.finished for s in states):
            return states
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} not finished after {timeout:.0f} s: "
                               + ", ".join(f"{s.job_id} {s.state}" for s in states))
        time.sleep(poll)
