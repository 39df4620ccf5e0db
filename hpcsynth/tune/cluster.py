"""A study on a SLURM cluster: one array of workers submitted through the project's submit path.

`submit_array` renders the `tune.sbatch` template for a `JobSpec` (a task's allocation: at least one trial's
ranks) and submits it with `hpcsynth.submit.submit_sbatch` as an array of `parallel` tasks; each task runs
`hpcsynth tune STUDY.yaml --worker` (`hpcsynth.tune.worker`). The study's journal is the only thing the tasks
share, on the cluster's shared filesystem. The array's job id is appended to `<study folder>/arrays.txt`, so that
a resume can refuse to start while an earlier array of the same study still runs.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hpcsynth.messages import ConfigError
from hpcsynth.submit import JobSpec, job_states, submit_sbatch
from hpcsynth.tune.search import fail_stale, open_study, remaining
from hpcsynth.tune.study_file import Study

TEMPLATE = "tune.sbatch"


def arrays_file(study: Study) -> Path:
    return study.folder / "arrays.txt"


def running_arrays(study: Study) -> list[str]:
    """The study's earlier arrays that SLURM still runs (or holds in its queue)."""
    path = arrays_file(study)
    ids = path.read_text(encoding="utf-8").split() if path.is_file() else []
    return [i for i in ids if any(not s.finished for s in job_states(i))]


def prepare(study: Study, resume: bool) -> int:
    """Create the study, or check that it may be resumed (no earlier array running; trials left running by a
    killed task recorded as failed); return the trials still to run."""
    exists = study.journal.is_file()
    if exists and not resume:
        raise ConfigError(f"{study.source}: a study already exists in {study.folder}; continue it with --resume")
    if resume and not exists:
        raise ConfigError(f"{study.source}: no study to resume in {study.folder}")
    busy = running_arrays(study) if exists else []
    if busy:
        raise ConfigError(f"{study.source}: its array {', '.join(busy)} still runs; wait for it or scancel it "
                          "before --resume")
    shared = open_study(study, create=not exists)
    fail_stale(shared)
    return remaining(study, shared)


def task_spec(study: Study, spec: JobSpec) -> JobSpec:
    """`spec` for one worker task: the tune template, and at least one trial's ranks."""
    if spec.ranks < study.ranks:
        raise ConfigError(f"{study.source}: a trial runs {study.ranks} ranks (one per site) but a task asks for "
                          f"{spec.ranks} (nodes x ntasks-per-node)")
    return replace(spec, script_template=TEMPLATE)


def submit_array(study: Study, spec: JobSpec, parallel: int, resume: bool = False) -> str | None:
    """Submit the study's workers as one SLURM array of `parallel` tasks (fewer when fewer trials remain);
    return its job id, or None when the budget is already used up."""
    spec = task_spec(study, spec)
    left = prepare(study, resume)
    if left == 0:
        return None
    tasks = min(parallel, left)
    job_id = submit_sbatch(spec, [study.source.resolve()] * tasks, study.folder / "slurm")
    with open(arrays_file(study), "a", encoding="utf-8") as out:
        out.write(job_id + "\n")
    return job_id
