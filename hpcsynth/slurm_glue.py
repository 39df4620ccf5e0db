"""Submission through submitit: the same `JobSpec`, with submitit writing the sbatch script.

A Python workflow (a notebook, a sweep) wants job objects it can wait on, cancel and ask for their state;
submitit gives those. Every task of the job is one rank: submitit starts them with `srun --mpi=pmi2` (the
PMI the mpich wheel speaks) and each calls `hpcsynth.launch.run_job(config, resume=True)` in its own process.
The job is requeueable and the call always resumes, so a preempted or timed-out job continues from its
checkpoint. Job states come from `sacct`; on a cluster without accounting put `slurm/bin` (a stand-in `sacct`
that answers from `scontrol`) first on PATH.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import submitit

from hpcsynth.launch import fixed_threads, run_job
from hpcsynth.submit import JobSpec

if TYPE_CHECKING:
    from hpcsynth.jobs.strategy_run import StrategyResult


class SiteRun(submitit.helpers.Checkpointable):
    """What every task runs: `run_job` on one job file, resuming. `Checkpointable`: when submitit hears of a
    timeout or preemption it requeues this same call, which continues from the run's last checkpoint."""

    def __call__(self, config: str) -> list[StrategyResult]:
        fixed_threads()
        return run_job(config, resume=True, progress=False)


def executor(spec: JobSpec, folder: Path) -> submitit.SlurmExecutor:
    """A submitit executor asking SLURM for `spec`'s resources; logs and pickles go to `folder/<job id>`."""
    ex = submitit.SlurmExecutor(folder=Path(folder) / "%j")
    ex.update_parameters(job_name=spec.job_name, nodes=spec.nodes, ntasks_per_node=spec.ntasks_per_node,
                         srun_args=["--mpi=pmi2"], stderr_to_stdout=True,
                         additional_parameters={"time": spec.time, "requeue": True})
    if spec.gpus_per_task:
        ex.update_parameters(gpus_per_task=spec.gpus_per_task)
    if spec.cpus_per_task:
        ex.update_parameters(cpus_per_task=spec.cpus_per_task)
    if spec.partition:
        ex.update_parameters(partition=spec.partition)
    return ex


def submit(spec: JobSpec, configs: list[Path], folder: Path) -> list[submitit.Job]:
    """Submit one job, or an array (task i runs the i-th job file) when several are given."""
    ex = executor(spec, folder)
    if len(configs) == 1:
        return [ex.submit(SiteRun(), str(configs[0]))]
    return ex.map_array(SiteRun(), [str(c) for c in configs])
