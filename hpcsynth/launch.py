"""Running a job file on this process's rank: `run_job`, the plain function every entry point calls.

`hpcsynth run` calls it, and SLURM submission through submitit sends it as the callable every task runs
(`hpcsynth.slurm_glue`), so both share one behaviour. Errors are one line on stderr and a non-zero exit on
every rank. A configuration error is the same on every rank, so rank 0 alone reports it; any other failure is
reported by the rank it happened on, which then aborts the whole MPI job, so no rank is ever left waiting in
a collective for a partner that died.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from hpcsynth.comm import env_rank
from hpcsynth.messages import ConfigError

if TYPE_CHECKING:
    from hpcsynth.comm import Communicator
    from hpcsynth.config import RunConfig
    from hpcsynth.jobs.strategy_run import StrategyResult

T = TypeVar("T")


def fixed_threads() -> None:
    """Same seed, same machine, same samples: MKL's dynamic threading may run a product on fewer threads than
    asked when it judges the machine busy, which changes the summation order and so the last bits of a training
    step. Entry points fix it before anything loads MKL, where the user has not chosen."""
    os.environ.setdefault("MKL_DYNAMIC", "FALSE")


def fail(message: str, code: int, comm: Communicator | None = None, report: bool = True,
         agreed: bool = False) -> NoReturn:
    """Print the error (where `report`) and stop. A failure every rank `agreed` on exits normally everywhere;
    any other failure under MPI aborts the job, so ranks still inside a collective are stopped too."""
    if report:
        sys.stderr.write(f"hpcsynth: error: {message}\n")
        sys.stderr.flush()
    if comm is not None and comm.size > 1 and not agreed:
        # the abort tears the job down, and with it a report the launcher has not yet forwarded: the reporting
        # rank waits a moment first, the silent ones longer, so that its abort (and its exit code) comes first
        time.sleep(0.2 if report else 0.5)
        comm.abort(code)
    sys.exit(code)


def load_job(path: str | Path) -> RunConfig:
    """The job file, validated; a bad one is reported once (rank 0) before MPI starts, and every rank exits 2."""
    from hpcsynth.config import load

    try:
        return load(path)
    except ConfigError as err:
        fail(str(err), 2, report=env_rank() == 0)


def collectively(comm: Communicator, work: Callable[[], T]) -> T:
    """Run `work()` on every rank: an interruption exits 3 everywhere after the same checkpoint; a configuration
    error (the same everywhere) is reported by rank 0; any other failure by the rank it happened on (once when
    all ranks agreed on it), and every rank stops."""
    from hpcsynth.federated.preemption import INTERRUPTED_EXIT_CODE, Interrupted

    try:
        return work()
    except Interrupted as err:
        if comm.is_root:
            sys.stderr.write(f"\nhpcsynth: {err}\n")
        sys.exit(INTERRUPTED_EXIT_CODE)
    except ConfigError as err:
        fail(str(err), 2, comm, report=comm.is_root)
    except Exception as err:
        everywhere = getattr(err, "everywhere", False)
        where = f"rank {comm.rank}: " if comm.size > 1 and not everywhere else ""
        fail(f"{where}{err or type(err).__name__}", 1, comm, report=comm.is_root or not everywhere,
             agreed=everywhere)


def progress_bar(cfg: RunConfig, comm: Communicator) -> Callable[[str, Any], None] | None:
    """A tqdm bar on rank 0 over all rounds of all strategies, drawn from the first finished round on (so a job
    that fails while reading its data shows only the error); None elsewhere. Call `.close()` at the end."""
    if not (comm.is_root and cfg.progress):
        return None
    from tqdm import tqdm

    bars = []

    def update(name: str, record: Any) -> None:
        if not bars:
            bars.append(tqdm(total=cfg.federation.rounds * len(cfg.strategies), unit="round", file=sys.stderr))
        bars[0].set_description(f"{name} round {record.round + 1}/{cfg.federation.rounds}")
        bars[0].set_postfix(loss=f"{record.loss:.3f}")
        bars[0].update(1)

    update.close = lambda: bars and bars[0].close()
    return update


def run_job(config: str | Path, *, out: str | None = None, resume: bool = False,
            progress: bool = True) -> list[StrategyResult]:
    """Run the job file `config` with this process as one rank (every rank of the job calls it); return the
    results of its strategies (the same on every rank).

    `out` overrides the job's `output`; `resume` skips strategies already finished and continues an interrupted
    one from its checkpoint; `progress=False` draws no bar. A failure stops every rank with one message; a
    preempted run (SIGTERM, SIGUSR1) checkpoints and exits with code 3."""
    cfg = load_job(config)
    if out:
        cfg.output = out
    if not progress:
        cfg.progress = False
    from hpcsynth.comm import world
    from hpcsynth.federated.preemption import StopRequest
    from hpcsynth.jobs.train import main
    from hpcsynth.virtual_sites import host_sites

    comm = world()
    bar = progress_bar(cfg, comm)
    stop = StopRequest().install()

    def site(site_comm: Communicator) -> list[StrategyResult]:
        return main(cfg, site_comm, progress=bar if site_comm.is_root else None, resume=resume, stop=stop)

    per_rank = cfg.federation.sites_per_rank
    try:
        return collectively(comm, lambda: site(comm) if per_rank == 1 else host_sites(per_rank, comm, site)[0])
    finally:
        if bar:
            bar.close()
