"""The `hpcsynth` command: run, shift, evaluate, inspect, export, datasets, submit, status, scale.

Errors are one line on stderr and a non-zero exit on every rank. A configuration error is the same on every
rank, so rank 0 alone reports it; any other failure is reported by the rank it happened on, which then aborts
the whole MPI job, so no rank is ever left waiting in a collective for a partner that died.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from hpcsynth.config import ConfigError


def _env_rank() -> int:
    """The launcher's rank before MPI starts (so a bad config is reported once without initialising MPI)."""
    for var in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def _fail(message: str, code: int, comm=None, report: bool = True, agreed: bool = False) -> None:
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


def _progress_bar(cfg, comm):
    """A tqdm bar on rank 0 over all rounds of all strategies, drawn from the first finished round on (so a job
    that fails while reading its data shows only the error); None elsewhere."""
    if not (comm.is_root and cfg.progress):
        return None
    from tqdm import tqdm

    bars = []

    def update(name, record) -> None:
        if not bars:
            bars.append(tqdm(total=cfg.federation.rounds * len(cfg.strategies), unit="round", file=sys.stderr))
        bars[0].set_description(f"{name} round {record.round + 1}/{cfg.federation.rounds}")
        bars[0].set_postfix(loss=f"{record.loss:.3f}")
        bars[0].update(1)

    update.close = lambda: bars and bars[0].close()
    return update


def _print_results(results) -> None:
    header = f"{'strategy':<17} {'fidelity':>9} {'DCR p5 syn':>11} {'DCR p5 hold':>12} {'wall s':>8}"
    print(header)
    print("-" * len(header))
    for r in results:
        s = r.scores
        print(f"{r.strategy:<17} {s['fidelity']:>9.4f} {s['dcr_synthetic_p5']:>11.4f} "
              f"{s.get('dcr_holdout_p5', float('nan')):>12.4f} {s['wall_s']:>8.1f}")
    for r in results:
        print(f"run file: {r.path}")


def _load(path: str):
    """The job file, validated; a bad one is reported once (rank 0) before MPI starts, and every rank exits 2."""
    from hpcsynth.config import load

    try:
        return load(path)
    except ConfigError as err:
        _fail(str(err), 2, report=_env_rank() == 0)


def _collectively(comm, work):
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
        _fail(str(err), 2, comm, report=comm.is_root)
    except Exception as err:
        everywhere = getattr(err, "everywhere", False)
        where = f"rank {comm.rank}: " if comm.size > 1 and not everywhere else ""
        _fail(f"{where}{err or type(err).__name__}", 1, comm, report=comm.is_root or not everywhere, agreed=everywhere)


def cmd_run(args: argparse.Namespace) -> None:
    cfg = _load(args.config)
    if args.out:
        cfg.output = args.out
    if args.no_progress:
        cfg.progress = False
    from hpcsynth.comm import world
    from hpcsynth.federated.preemption import StopRequest
    from hpcsynth.jobs.train import main

    comm = world()
    bar = _progress_bar(cfg, comm)
    stop = StopRequest().install()
    results = _collectively(comm, lambda: main(cfg, comm, progress=bar, resume=args.resume, stop=stop))
    if bar:
        bar.close()
    if comm.is_root:
        _print_results(results)


def cmd_shift(args: argparse.Namespace) -> None:
    cfg = _load(args.config)
    from hpcsynth.comm import world
    from hpcsynth.jobs.shift import main

    comm = world()
    _collectively(comm, lambda: main(cfg, comm, out=args.out))


def cmd_inspect(args: argparse.Namespace) -> None:
    from hpcsynth.io.inspect import describe

    print(describe(args.run))


def cmd_export(args: argparse.Namespace) -> None:
    from hpcsynth.io.inspect import export

    path = export(args.run, args.out, site=args.site, strategy=args.strategy)
    print(f"wrote {path}")


def cmd_datasets(args: argparse.Namespace) -> None:
    from hpcsynth.data.cohorts import COHORTS, load_cohort

    if args.action == "list":
        for name, cohort in COHORTS.items():
            print(f"{name:<9} time={cohort.time:<10} event={cohort.event:<9} {cohort.description}")
        return
    if args.name not in COHORTS:
        raise ConfigError(f"unknown dataset {args.name!r} (known: {', '.join(COHORTS)})")
    frame = load_cohort(args.name, n_patients=args.n_patients, n_sites=args.n_sites, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out) if out.suffix in (".parquet", ".pq") else frame.to_csv(out, index=False)
    print(f"wrote {len(frame)} rows of {args.name} to {out}")


def cmd_submit(args: argparse.Namespace) -> None:
    """Print the job id only, so that `JOB=$(hpcsynth submit ...)` works; the array's job files and the
    rendered script go to --folder."""
    from hpcsynth.submit import check_ranks, expand_grid, spec_from_args, submit_sbatch

    spec = spec_from_args(args)
    folder = Path(args.folder)
    configs = expand_grid(Path(args.config), args.array, folder) if args.array else [Path(args.config)]
    check_ranks(configs, spec)
    if args.sbatch:
        job_id = submit_sbatch(spec, configs, folder)
    else:
        from hpcsynth.slurm_glue import submit

        job_id = submit(spec, configs, folder)[0].job_id.split("_")[0]
    print(job_id)


def cmd_status(args: argparse.Namespace) -> None:
    """One line per job (or array task); with --wait, a line per change until all end (exit 1 unless all
    COMPLETED). Without a job id: this user's queue."""
    import subprocess

    from hpcsynth.submit import job_states, wait

    if args.job is None:
        sys.exit(subprocess.run(["squeue", "--me"]).returncode)

    def show(states) -> None:
        for s in states:
            extra = f" (restarts {s.restarts})" if s.restarts else ""
            reason = f" {s.reason}" if s.reason not in ("", "None") else ""
            print(f"{s.job_id} {s.state}{extra}{reason}", flush=True)

    if args.wait:
        states = wait(args.job, timeout=args.timeout, on_change=show)
    else:
        states = job_states(args.job)
        show(states)
    if not states:
        _fail(f"status: job {args.job} is unknown to SLURM", 2)
    if args.wait and any(s.state != "COMPLETED" for s in states):
        sys.exit(1)


def cmd_scale(args: argparse.Namespace) -> None:
    from hpcsynth import scale
    from hpcsynth.submit import spec_from_args

    ranks = [int(r) for r in args.ranks.split(",")]
    if args.slurm:
        args.ntasks_per_node = args.ntasks_per_node or max(ranks)
    table, projection, png = scale.study(Path(args.config), ranks, args.mode, Path(args.folder),
                                         spec_from_args(args) if args.slurm else None,
                                         Path(args.plot) if args.plot else None)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    model = projection.model
    print(f"allreduce model: t = 2 log2(p) * {model.alpha:.3g} s + 2 (p-1)/p * n * {model.beta:.3g} s/B")
    print(f"projected round at {scale.PROJECT_TO} sites: {float(projection.round_s(scale.PROJECT_TO)):.4g} s, "
          f"efficiency {float(projection.efficiency(scale.PROJECT_TO)):.3f} (a projection, not a measurement)")
    print(f"plot: {png}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Score a run (or every run of a comparison) against real rows, update its /evaluation, write the report.
    Under `mpiexec -n K` each rank scores its own site's held-out rows (federated evaluation)."""
    from hpcsynth.evaluate.runs import evaluate_file, summary_table
    from hpcsynth.comm import world

    comm = world()
    try:
        columns = {k: v.split(",") for k, v in (("quasi", args.quasi), ("sensitive", args.sensitive)) if v}
        sections = evaluate_file(args.run, args.real, args.out, comm, columns)
    except ConfigError as err:
        _fail(str(err), 2, comm, report=comm.is_root, agreed=True)
    except Exception as err:
        _fail(f"{f'rank {comm.rank}: ' if comm.size > 1 else ''}{err or type(err).__name__}", 1, comm)
    if comm.is_root:
        print(summary_table(sections))
        print(f"report: {args.out or Path(args.run).with_suffix('.html')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpcsynth", description="Federated synthetic health data: each MPI rank "
                                     "is a hospital; sites exchange model parameters, never rows.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a job (under `mpiexec -n K` each rank is one site)")
    run.add_argument("config", help="the YAML job file (see jobs/demo.yaml)")
    run.add_argument("--out", help="the run file to write (overrides `output` in the config)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--resume", action="store_true",
                     help="skip strategies already finished and continue an interrupted one from its checkpoint "
                          "(<output>.partial.h5); SIGTERM or SIGUSR1 makes a run checkpoint and exit with code 3")
    run.set_defaults(func=cmd_run)
    shift = sub.add_parser("shift", help="measure how far each site is from the pooled data (merged histograms "
                           "only) and say what it means for the strategy")
    shift.add_argument("config", help="the YAML job file")
    shift.add_argument("--out", help="the file to write (default: <output stem>-shift.h5)")
    shift.set_defaults(func=cmd_shift)
    ins = sub.add_parser("inspect", help="print a readable summary of a run file")
    ins.add_argument("run", help="a run file (.h5)")
    ins.set_defaults(func=cmd_inspect)
    exp = sub.add_parser("export", help="write a synthetic table of a run file as CSV or Parquet")
    exp.add_argument("run", help="a run file (.h5)")
    exp.add_argument("--out", required=True, help="the file to write (.csv or .parquet)")
    exp.add_argument("--site", type=int, help="the table of one site (default: pooled)")
    exp.add_argument("--strategy", help="in a comparison file, which strategy's run (default: the first)")
    exp.set_defaults(func=cmd_export)
    data = sub.add_parser("datasets", help="list or export the named cohorts (the MDS simulator and real ones)")
    data.add_argument("action", choices=["list", "export"])
    data.add_argument("name", nargs="?", default="mds")
    data.add_argument("--out", help="with export: the file to write (.csv or .parquet)")
    data.add_argument("--n-patients", type=int, default=4427, help="mds only: cohort size")
    data.add_argument("--n-sites", type=int, default=3, help="mds only: number of sites")
    data.add_argument("--seed", type=int, default=0, help="mds only: the simulator's seed")
    data.set_defaults(func=cmd_datasets)
    from hpcsynth.submit import add_job_options

    sbm = sub.add_parser("submit", help="submit a job to SLURM (through submitit, or sbatch with --sbatch)")
    sbm.add_argument("config", help="the YAML job file")
    add_job_options(sbm, 1, "ranks per node (ranks = nodes x this = the job's sites)")
    sbm.add_argument("--array", action="append", default=[], metavar="KEY=V1,V2",
                     help="a job array over these values of a job-file key (repeat for a grid), "
                          "e.g. federation.strategy=isolated,fedavg")
    sbm.add_argument("--sbatch", action="store_true", help="render slurm/cpu.sbatch or gpu.sbatch and run sbatch")
    sbm.add_argument("--folder", default="runs/slurm", help="where job files, scripts and logs go")
    sbm.set_defaults(func=cmd_submit)
    sts = sub.add_parser("status", help="the state of a SLURM job (or this user's queue)")
    sts.add_argument("job", nargs="?", help="a job id (an array's id covers all its tasks)")
    sts.add_argument("--wait", action="store_true", help="follow the job until it ends; exit 1 unless completed")
    sts.add_argument("--timeout", type=float, help="with --wait: give up after this many seconds")
    sts.set_defaults(func=cmd_status)
    scl = sub.add_parser("scale", help="a strong or weak scaling study with an allreduce model to 1,024 sites")
    scl.add_argument("config", help="the YAML job file (built-in cohort, one strategy)")
    scl.add_argument("--ranks", required=True, help="comma-separated rank counts, e.g. 1,2,4")
    scl.add_argument("--mode", choices=["strong", "weak"], default="strong",
                     help="strong: data.n_patients in all; weak: data.n_patients / (first rank count) per site")
    scl.add_argument("--slurm", action="store_true", help="one SLURM job per rank count instead of local mpiexec")
    add_job_options(scl, None, "with --slurm: at most this many ranks per node (default: all on one node)")
    scl.add_argument("--folder", default="runs/scale", help="job files, run files, table and plot")
    scl.add_argument("--plot", help="the PNG to write (default FOLDER/MODE.png)")
    scl.set_defaults(func=cmd_scale)
    evl = sub.add_parser("evaluate", help="score a run against real held-out rows (fidelity, survival, genomics, "
                         "utility, privacy, fairness), update its /evaluation and write an HTML report")
    evl.add_argument("run", help="a run or comparison file (.h5)")
    evl.add_argument("--real", help="real rows to compare with (CSV, Parquet or HDF5; default: the held-out rows "
                     "regenerated from the job's stored config)")
    evl.add_argument("--out", help="the HTML report to write (default: the run file's name with .html)")
    evl.add_argument("--quasi", help="quasi-identifiers for k-anonymity, l-diversity and the homogeneity attack, "
                     "comma-separated (default: age and sex where present)")
    evl.add_argument("--sensitive", help="sensitive columns for attribute inference and l-diversity, comma-separated "
                     "(default: TP53 in the MDS cohort, else the event)")
    evl.set_defaults(func=cmd_evaluate)
    return parser


def fixed_threads() -> None:
    """Same seed, same machine, same samples: MKL's dynamic threading may run a product on fewer threads than
    asked when it judges the machine busy, which changes the summation order and so the last bits of a training
    step. The command fixes it before anything loads MKL, where the user has not chosen."""
    os.environ.setdefault("MKL_DYNAMIC", "FALSE")


def main(argv: list[str] | None = None) -> None:
    fixed_threads()
    args = build_parser().parse_args(argv)
    if args.command == "datasets" and args.action == "export" and not args.out:
        _fail("datasets export: --out is required", 2)
    try:
        args.func(args)
    except (ConfigError, ValueError, OSError) as err:
        _fail(str(err), 2)


if __name__ == "__main__":
    main()
