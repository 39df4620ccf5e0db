"""The `hpcsynth` command: run, shift, evaluate, inspect, export, release, datasets, submit, status, scale, tune.

Each subcommand parses its options and calls a plain function of the layers below (`hpcsynth.launch.run_job`
for `run`); errors are one line on stderr and a non-zero exit on every rank (see `hpcsynth.launch`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hpcsynth.launch import collectively, fail, fixed_threads, load_job, run_job
from hpcsynth.messages import ConfigError
from hpcsynth.submit import add_job_options

Subcommands = argparse._SubParsersAction  # what `add_subparsers` returns


def _print_results(results: list) -> None:
    """The job's table: every strategy's release against the consortium's held-out rows, with the per-round
    scores (the same numbers `hpcsynth evaluate` gives for them), and where each run file is."""
    from hpcsynth.evaluate.metrics import per_round
    from hpcsynth.evaluate.report import RunSection, summary_table

    if results and results[0].evaluation is None:  # a longitudinal job: its temporal scores
        from hpcsynth.evaluate.temporal_metrics import sequence_table

        print(sequence_table({r.strategy: r.scores for r in results}))
    else:
        print(summary_table([RunSection(r.strategy, r.evaluation) for r in results], (*per_round(), "wall_s")))
    for r in results:
        print(f"run file: {r.path}")


def cmd_run(args: argparse.Namespace) -> None:
    from hpcsynth.comm import world

    results = run_job(args.config, out=args.out, resume=args.resume, progress=not args.no_progress)
    if world().is_root:
        _print_results(results)


def cmd_shift(args: argparse.Namespace) -> None:
    cfg = load_job(args.config)
    from hpcsynth.comm import world
    from hpcsynth.jobs.shift import main

    comm = world()
    collectively(comm, lambda: main(cfg, comm, out=args.out))


def cmd_inspect(args: argparse.Namespace) -> None:
    from hpcsynth.io.inspect import describe

    print(describe(args.run))
    if args.report:
        from hpcsynth.tune.report import report_from_file

        print(f"report: {report_from_file(args.run, args.report)}")


def cmd_export(args: argparse.Namespace) -> None:
    from hpcsynth.io.inspect import export

    path = export(args.run, args.out, site=args.site, strategy=args.strategy)
    print(f"wrote {path}")


def cmd_release(args: argparse.Namespace) -> None:
    """Judge the table by the policy and write the release; a refusal prints one line per failed check, writes
    nothing and exits 1."""
    from hpcsynth.evaluate.policy import DEFAULT_POLICY, load_policy
    from hpcsynth.io.release import ReleaseRefused, release

    policy = load_policy(args.policy) if args.policy else DEFAULT_POLICY
    try:
        path, outcomes = release(args.run, args.out, site=args.site, strategy=args.strategy, policy=policy)
    except ReleaseRefused as refused:
        for outcome in refused.failed:
            sys.stderr.write(f"hpcsynth: release refused: {outcome.line()}\n")
        sys.exit(1)
    for outcome in outcomes:
        print(outcome.line())
    print(f"wrote {path} (policy: {policy.source})")


def cmd_datasets(args: argparse.Namespace) -> None:
    from hpcsynth.data.cohorts import COHORTS, load_cohort

    if args.action == "list":
        from hpcsynth.data.longitudinal import LONGITUDINAL

        for name, cohort in COHORTS.items():
            print(f"{name:<13} per-patient   time={cohort.time:<10} event={cohort.event:<9} {cohort.description}")
        for name, seq in LONGITUDINAL.items():
            print(f"{name:<13} longitudinal  key={seq.key:<11} index={seq.index:<7} {seq.description}")
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
    rendered script go to --folder. --dry-run writes and prints the script --sbatch would submit, and submits
    nothing."""
    from hpcsynth.submit import check_ranks, expand_grid, sbatch_command, spec_from_args, submit_sbatch, write_script

    if args.dry_run and not args.sbatch:
        raise ConfigError("submit: --dry-run shows the script --sbatch would submit; add --sbatch")
    spec = spec_from_args(args)
    folder = Path(args.folder)
    configs = expand_grid(Path(args.config), args.array, folder) if args.array else [Path(args.config)]
    check_ranks(configs, spec)
    if args.dry_run:
        script = write_script(spec, folder)
        print(script.read_text(encoding="utf-8"), end="")
        print(f"hpcsynth: not submitted; to submit: {' '.join(sbatch_command(script, configs))}", file=sys.stderr)
        return
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
        fail(f"status: job {args.job} is unknown to SLURM", 2)
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
    print(scale.report(table, projection).to_string(index=False, na_rep="", float_format=lambda x: f"{x:.4g}"))
    model = projection.model
    print(f"allreduce model: t = 2 log2(p) * {model.alpha:.3g} s + 2 (p-1)/p * n * {model.beta:.3g} s/B, fitted "
          f"to the measured rows (comm_residual_s: measured minus fitted comm per round)")
    print(f"projected rows: the model beyond the largest run ({int(table['ranks'].max())} ranks), not measured")
    print(f"projected round at {scale.PROJECT_TO} sites: {float(projection.round_s(scale.PROJECT_TO)):.4g} s, "
          f"efficiency {float(projection.efficiency(scale.PROJECT_TO)):.3f} (a projection, not a measurement)")
    print(f"plot: {png}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Score a run's release (or every run's of a comparison) against the consortium's held-out rows, update its
    /evaluation, write the report. Under `mpiexec -n K` each rank holds its own site's rows; in one process the
    sites run as threads, with the same figures."""
    from hpcsynth.comm import world
    from hpcsynth.evaluate.report import OWN_SITE, sites_frame, summary_table
    from hpcsynth.io.sequence_runfile import holds_sequences
    from hpcsynth.jobs.evaluate import evaluate_file

    comm = world()
    if holds_sequences(args.run):
        return _evaluate_sequences(args, comm)
    try:
        columns = {k: v.split(",") for k, v in (("quasi", args.quasi), ("sensitive", args.sensitive)) if v}
        sections = evaluate_file(args.run, args.real, args.out, comm, columns, args.own_site)
    except ConfigError as err:
        fail(str(err), 2, comm, report=comm.is_root, agreed=True)
    except Exception as err:
        fail(f"{f'rank {comm.rank}: ' if comm.size > 1 else ''}{err or type(err).__name__}", 1, comm)
    if comm.is_root:
        print(summary_table(sections))
        for section in (s for s in sections if s.evaluation.own_site):
            print(f"\n{section.name}: {OWN_SITE}")
            table = sites_frame(section.evaluation, own_site=True)
            print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
        print(f"report: {args.out or Path(args.run).with_suffix('.html')}")


def _evaluate_sequences(args: argparse.Namespace, comm) -> None:
    """`hpcsynth evaluate` on a longitudinal run: its temporal scores again, /evaluation, the report."""
    from hpcsynth.evaluate.temporal_metrics import sequence_table
    from hpcsynth.jobs.longitudinal_evaluate import evaluate_sequence_file

    given = next((f"--{k.replace('_', '-')}" for k in ("real", "quasi", "sensitive", "own_site") if getattr(args, k)),
                 None)
    try:
        if given:
            raise ConfigError(f"evaluate: {given} is not supported for longitudinal runs yet ({args.run} holds "
                              "visit sequences)")
        sections = evaluate_sequence_file(args.run, args.out, comm)
    except ConfigError as err:
        fail(str(err), 2, comm, report=comm.is_root, agreed=True)
    except Exception as err:
        fail(f"{f'rank {comm.rank}: ' if comm.size > 1 else ''}{err or type(err).__name__}", 1, comm)
    if comm.is_root:
        print(sequence_table({s.name: s.scores for s in sections}))
        print(f"report: {args.out or Path(args.run).with_suffix('.html')}")


def cmd_tune(args: argparse.Namespace) -> None:
    """Run a tuning study's remaining trials (--local: as processes here; --submit: as one SLURM array of workers,
    printing its job id), then write the study file and its HTML report and print the summary (--submit: with
    --wait, after the array ended). A failed trial is recorded and the study goes on; a failed worker (or array
    task) makes the exit non-zero, after the files. --worker is what each array task runs."""
    from hpcsynth.tune.study_file import load_study

    if args.worker:
        from hpcsynth.tune.worker import serve

        sys.exit(serve(args.study))
    if args.local == args.submit:
        raise ConfigError("tune: give --local (the trials as processes here) or --submit (a SLURM array of workers)")
    if args.wait and not args.submit:
        raise ConfigError("tune: --wait waits for the array of --submit")
    study = load_study(args.study)
    if args.local:
        from hpcsynth.tune.search import run_local

        failures = run_local(study, resume=args.resume, parallel=args.parallel)
    else:
        from hpcsynth.submit import spec_from_args, wait
        from hpcsynth.tune.cluster import submit_array

        args.ntasks_per_node = args.ntasks_per_node or study.ranks
        job_id = submit_array(study, spec_from_args(args), args.parallel or study.parallel, args.resume)
        if job_id is None:
            print(f"tune: the budget of {study.trials} trials is used up; nothing submitted", file=sys.stderr)
        else:
            print(job_id, flush=True)  # alone on its line: JOB=$(hpcsynth tune STUDY --submit) works
        if not args.wait:
            return
        states = wait(job_id, timeout=args.timeout) if job_id else []
        failures = [f"array task {s.job_id} {s.state}" for s in states if s.state != "COMPLETED"]
    from hpcsynth.io.inspect import describe
    from hpcsynth.tune.report import conclude

    path, report = conclude(study)
    print(describe(path))
    print(f"report: {report}")
    if failures:
        fail("tune: " + "; ".join(failures), 1)


def _add_run(sub: Subcommands) -> None:
    run = sub.add_parser("run", help="run a job (under `mpiexec -n K` each rank is one site)")
    run.add_argument("config", help="the YAML job file (see jobs/demo.yaml)")
    run.add_argument("--out", help="the run file to write (overrides `output` in the config)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--resume", action="store_true",
                     help="skip strategies already finished and continue an interrupted one from its checkpoint "
                          "(<output>.partial.h5); SIGTERM or SIGUSR1 makes a run checkpoint and exit with code 3")
    run.set_defaults(func=cmd_run)


def _add_shift(sub: Subcommands) -> None:
    shift = sub.add_parser("shift", help="measure how far each site is from the pooled data (merged histograms "
                           "only) and say what it means for the strategy")
    shift.add_argument("config", help="the YAML job file")
    shift.add_argument("--out", help="the file to write (default: <output stem>-shift.h5)")
    shift.set_defaults(func=cmd_shift)


def _add_inspect(sub: Subcommands) -> None:
    ins = sub.add_parser("inspect", help="print a readable summary of a run, comparison or study file")
    ins.add_argument("run", help="a run, comparison or study file (.h5)")
    ins.add_argument("--report", metavar="OUT.html", help="a study file: also write its HTML report, drawn from "
                     "the study's journal (docs/tuning.md)")
    ins.set_defaults(func=cmd_inspect)


def _add_export(sub: Subcommands) -> None:
    exp = sub.add_parser("export", help="write a synthetic table of a run file as CSV or Parquet")
    exp.add_argument("run", help="a run file (.h5)")
    exp.add_argument("--out", required=True, help="the file to write (.csv or .parquet)")
    exp.add_argument("--site", type=int, help="the table of one site (default: pooled)")
    exp.add_argument("--strategy", help="in a comparison file, which strategy's run (default: the first)")
    exp.set_defaults(func=cmd_export)


def _add_release(sub: Subcommands) -> None:
    rel = sub.add_parser("release", help="write the shareable release of a run (synthetic rows, schema, scores, "
                         "privacy spent, provenance; never weights) when its scores pass the release policy")
    rel.add_argument("run", help="an evaluated run file (.h5; see `hpcsynth evaluate`)")
    rel.add_argument("--out", required=True, help="the release to write (.h5, or .csv / .parquet with a "
                     "<out>.provenance.json beside it)")
    rel.add_argument("--site", type=int, help="the table of one site (default: pooled)")
    rel.add_argument("--strategy", help="in a comparison file, which strategy's run (default: the first)")
    rel.add_argument("--policy", help="the release policy (YAML; default: docs/release-policy.yaml's checks)")
    rel.set_defaults(func=cmd_release)


def _add_datasets(sub: Subcommands) -> None:
    data = sub.add_parser("datasets", help="list or export the named cohorts (the MDS simulator and real ones)")
    data.add_argument("action", choices=["list", "export"])
    data.add_argument("name", nargs="?", default="mds")
    data.add_argument("--out", help="with export: the file to write (.csv or .parquet)")
    data.add_argument("--n-patients", type=int, default=4427, help="mds only: cohort size")
    data.add_argument("--n-sites", type=int, default=3, help="mds only: number of sites")
    data.add_argument("--seed", type=int, default=0, help="mds only: the simulator's seed")
    data.set_defaults(func=cmd_datasets)


def _add_submit(sub: Subcommands) -> None:
    sbm = sub.add_parser("submit", help="submit a job to SLURM (through submitit, or sbatch with --sbatch)")
    sbm.add_argument("config", help="the YAML job file")
    add_job_options(sbm, 1, "ranks per node (ranks = nodes x this = the job's sites)")
    sbm.add_argument("--array", action="append", default=[], metavar="KEY=V1,V2",
                     help="a job array over these values of a job-file key (repeat for a grid), "
                          "e.g. federation.strategy=isolated,fedavg")
    sbm.add_argument("--sbatch", action="store_true",
                     help="fill in the cpu.sbatch or gpu.sbatch template (slurm/ in a checkout) and run sbatch")
    sbm.add_argument("--dry-run", action="store_true", help="with --sbatch: write and print the script, submit nothing")
    sbm.add_argument("--folder", default="runs/slurm", help="where job files, scripts and logs go")
    sbm.set_defaults(func=cmd_submit)


def _add_status(sub: Subcommands) -> None:
    sts = sub.add_parser("status", help="the state of a SLURM job (or this user's queue)")
    sts.add_argument("job", nargs="?", help="a job id (an array's id covers all its tasks)")
    sts.add_argument("--wait", action="store_true", help="follow the job until it ends; exit 1 unless completed")
    sts.add_argument("--timeout", type=float, help="with --wait: give up after this many seconds")
    sts.set_defaults(func=cmd_status)


def _add_scale(sub: Subcommands) -> None:
    scl = sub.add_parser("scale", help="a strong or weak scaling study with an allreduce model to 1,024 sites",
                         description="One job per rank count, measured from its run file (round time, compute, "
                                     "comm, peak memory per rank); the alpha-beta allreduce model is fitted to "
                                     "them, its residuals shown, and rows beyond the largest run are labelled "
                                     "projected. With --slurm --nodes N each run is spread evenly over N nodes "
                                     "(fewer when it has fewer ranks).")
    scl.add_argument("config", help="the YAML job file (built-in cohort, one strategy)")
    scl.add_argument("--ranks", required=True, help="comma-separated rank counts, e.g. 1,2,4")
    scl.add_argument("--mode", choices=["strong", "weak"], default="strong",
                     help="strong: data.n_patients in all; weak: data.n_patients / (first rank count) per site")
    scl.add_argument("--slurm", action="store_true", help="one SLURM job per rank count instead of local mpiexec")
    add_job_options(scl, None, "with --slurm and one node: at most this many ranks per node (default: all on "
                               "one node); with --nodes N > 1 the ranks are split evenly instead")
    scl.add_argument("--folder", default="runs/scale", help="job files, run files, table and plot")
    scl.add_argument("--plot", help="the PNG to write (default FOLDER/MODE.png)")
    scl.set_defaults(func=cmd_scale)


def _add_evaluate(sub: Subcommands) -> None:
    evl = sub.add_parser("evaluate", help="score a run's release against the consortium's pooled held-out rows "
                         "(fidelity, survival, genomics, utility, privacy, fairness; isolated: each site alone), "
                         "update its /evaluation and write an HTML report")
    evl.add_argument("run", help="a run or comparison file (.h5)")
    evl.add_argument("--real", help="real rows to compare with (CSV, Parquet or HDF5; default: the held-out rows "
                     "regenerated from the job's stored config)")
    evl.add_argument("--out", help="the HTML report to write (default: the run file's name with .html)")
    evl.add_argument("--quasi", help="quasi-identifiers for k-anonymity, l-diversity and the homogeneity attack, "
                     "comma-separated (default: age and sex where present)")
    evl.add_argument("--sensitive", help="sensitive columns for attribute inference and l-diversity, comma-separated "
                     "(default: TP53 in the MDS cohort, else the event)")
    evl.add_argument("--own-site", action="store_true", help="also score each site's release against that site's "
                     "own held-out rows (does the release serve each hospital?), besides the consortium's")
    evl.set_defaults(func=cmd_evaluate)


def _add_tune(sub: Subcommands) -> None:
    tun = sub.add_parser("tune", help="a tuning study: Optuna searches job-file keys, every trial a job "
                         "(docs/tuning.md)")
    tun.add_argument("study", help="the YAML study file (job, space, objectives, trials, parallel, output)")
    tun.add_argument("--local", action="store_true", help="run the trials as processes on this machine")
    tun.add_argument("--submit", action="store_true", help="run the trials as one SLURM array of workers (tasks "
                     "share the study's journal); prints the array's job id")
    tun.add_argument("--wait", action="store_true", help="with --submit: wait for the array, then write the study "
                     "file and report and print the summary")
    tun.add_argument("--timeout", type=float, help="with --wait: give up after this many seconds")
    tun.add_argument("--parallel", type=int, help="trials at once: worker processes, or array tasks (default: the "
                     "study's `parallel`)")
    tun.add_argument("--resume", action="store_true", help="continue the study in its folder up to `trials`")
    add_job_options(tun, None, "with --submit: ranks per node of each task (default: a trial's ranks)")
    tun.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # what each array task runs
    tun.set_defaults(func=cmd_tune)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpcsynth", description="Federated synthetic health data: each MPI rank "
                                     "is a hospital; sites exchange model parameters, never rows.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_run, _add_shift, _add_inspect, _add_export, _add_release, _add_datasets, _add_submit,
                _add_status, _add_scale, _add_evaluate, _add_tune):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    fixed_threads()
    args = build_parser().parse_args(argv)
    if args.command == "datasets" and args.action == "export" and not args.out:
        fail("datasets export: --out is required", 2)
    try:
        args.func(args)
    except (ConfigError, ValueError, OSError) as err:
        fail(str(err), 2)


if __name__ == "__main__":
    main()
