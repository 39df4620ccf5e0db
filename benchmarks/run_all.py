"""Run every benchmark in turn (what `make bench` does) and keep each one's output under `benchmarks/results/`.

Each script runs in a process of its own, the MPI ones under `mpiexec` from the same environment, so that one
failing benchmark is reported and the others still run. The last line of each output is the script's ratio
against its named peer; this prints them together at the end, with the date, machine and load average, in the
form `benchmarks/README.md` records them.

    python benchmarks/run_all.py [--only knn noise ...]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name -> (MPI ranks or 0 for one process, extra arguments)
BENCHMARKS: dict[str, tuple[int, list[str]]] = {
    "knn": (0, []),
    "noise": (0, []),
    "transforms": (0, []),
    "aggregation": (4, []),
    "train_speed": (0, []),
    "quality": (0, []),
    "strategies": (0, []),
}


def command(name: str, ranks: int, extra: list[str]) -> list[str]:
    """The command line of one benchmark: this Python, under the mpiexec beside it when it needs ranks."""
    script = [sys.executable, str(HERE / f"{name}.py"), *extra]
    if not ranks:
        return script
    beside = Path(sys.executable).with_name("mpiexec")
    launcher = str(beside) if beside.exists() else shutil.which("mpiexec")
    if launcher is None:
        raise SystemExit(f"benchmarks/{name}.py needs mpiexec: install the mpich wheel (make setup does)")
    return [launcher, "-n", str(ranks), *script]


def run(name: str, out_dir: Path) -> str:
    """Run one benchmark, write its whole output to `out_dir/NAME.txt`, and return its last line."""
    ranks, extra = BENCHMARKS[name]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(command(name, ranks, extra), capture_output=True, text=True, env=env, cwd=HERE.parent)
    (out_dir / f"{name}.txt").write_text(done.stdout + done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"FAILED (exit {done.returncode}): {tail}"
    return lines[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    args = parser.parse_args()
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    names = args.only or list(BENCHMARKS)
    ratios = {}
    for name in names:
        print(f"running benchmarks/{name}.py ...", flush=True)
        ratios[name] = run(name, out_dir)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(f"# {stamp}  {platform.machine()}  {os.cpu_count()} CPUs  load average {os.getloadavg()[0]:.1f}")
    for name in names:
        print(f"{name:<12} {ratios[name]}")
    if any(r.startswith("FAILED") for r in ratios.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
