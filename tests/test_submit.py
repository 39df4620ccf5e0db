"""The submission layer without a cluster: rendering the templates, the job-file grid of an array, the spec."""
from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
import yaml

from hpcsynth.config import ConfigError, load
from hpcsynth.submit import JobSpec, expand_grid, render, template_text
from mpi_support import REPO


def _directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#SBATCH")]


def test_render_replaces_the_chosen_directives_adds_missing_ones_and_keeps_the_rest():
    template = template_text("cpu.sbatch")
    spec = JobSpec(nodes=2, ntasks_per_node=4, partition="short", time="00:30:00", job_name="study")
    text = render(template, spec.directives())
    lines = _directives(text)
    assert "#SBATCH --nodes=2" in lines and "#SBATCH --ntasks-per-node=4" in lines
    assert "#SBATCH --time=00:30:00" in lines and "#SBATCH --job-name=study" in lines
    assert "#SBATCH --partition=short" in lines  # not in the template: added with the others
    assert sum(line.startswith("#SBATCH --nodes") for line in lines) == 1
    assert "#SBATCH --requeue" in lines and "#SBATCH --signal=USR1@120" in lines
    body = lambda t: [line for line in t.splitlines() if not line.startswith("#SBATCH")]  # noqa: E731
    assert body(text) == body(template)


def test_gpu_jobs_use_the_gpu_template_with_one_rank_per_gpu():
    spec = JobSpec(nodes=2, ntasks_per_node=4, gpus_per_task=1)
    assert spec.template == "gpu.sbatch" and spec.ranks == 8
    lines = _directives(spec.script())
    assert "#SBATCH --gpus-per-task=1" in lines and "#SBATCH --ntasks-per-node=4" in lines
    assert JobSpec().template == "cpu.sbatch"


@pytest.mark.parametrize("name", ["cpu.sbatch", "gpu.sbatch"])
def test_the_packaged_templates_are_the_checkouts_slurm_files(name):
    assert template_text(name) == (REPO / "slurm" / name).read_text()


@pytest.mark.parametrize("name", ["cpu.sbatch", "gpu.sbatch", "local-cluster.sh"])
def test_the_slurm_scripts_are_valid_bash(name):
    done = subprocess.run(["bash", "-n", str(REPO / "slurm" / name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_dry_run_writes_and_prints_the_rendered_script_and_submits_nothing(write_job, tmp_path):
    job = write_job({"data.n_sites": 2})
    done = subprocess.run([sys.executable, "-m", "hpcsynth.cli", "submit", str(job), "--ntasks-per-node", "2",
                           "--sbatch", "--dry-run", "--folder", str(tmp_path / "slurm")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == JobSpec(ntasks_per_node=2).script()
    assert (tmp_path / "slurm" / "hpcsynth.sbatch").read_text() == done.stdout
    assert f"not submitted; to submit: sbatch --parsable {tmp_path / 'slurm' / 'hpcsynth.sbatch'} {job}" \
        in done.stderr


def test_a_dry_run_without_sbatch_is_refused(write_job):
    done = subprocess.run([sys.executable, "-m", "hpcsynth.cli", "submit", str(write_job()), "--dry-run"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--dry-run shows the script --sbatch would submit" in done.stderr


def test_a_job_spec_refuses_impossible_sizes():
    with pytest.raises(ValueError, match="at least 1"):
        JobSpec(ntasks_per_node=0)


def test_an_array_grid_writes_one_valid_job_file_per_combination_with_its_own_output(write_job, tmp_path):
    job = write_job({"output": "runs/study.h5"})
    paths = expand_grid(job, ["federation.strategy=isolated,fedavg", "seed=0,1"], tmp_path / "grid")
    assert len(paths) == 4
    configs = [load(p) for p in paths]
    assert [(c.federation.strategy, c.seed) for c in configs] == [("isolated", 0), ("isolated", 1),
                                                                  ("fedavg", 0), ("fedavg", 1)]
    assert configs[3].output == "runs/study-strategy-fedavg-seed-1.h5"
    assert len({c.output for c in configs}) == 4
    assert configs[0].model.hidden == yaml.safe_load(job.read_text())["model"]["hidden"]


def test_an_array_grid_with_a_bad_value_fails_before_submission_naming_the_key(write_job, tmp_path):
    with pytest.raises(ConfigError, match="federation.strategy: unknown strategy 'fedavgg'"):
        expand_grid(write_job(), ["federation.strategy=fedavg,fedavgg"], tmp_path / "grid")
    with pytest.raises(ValueError, match="expected KEY=V1,V2"):
        expand_grid(write_job(), ["seed"], tmp_path / "grid")


def test_every_submitit_task_runs_run_job_resuming_and_a_requeue_repeats_the_call(monkeypatch):
    from hpcsynth import slurm_glue

    calls = []
    monkeypatch.setattr(slurm_glue, "run_job", lambda config, **options: calls.append((config, options)) or ["r"])
    task = pickle.loads(pickle.dumps(slurm_glue.SiteRun()))  # submitit sends the callable pickled
    assert task("job.yaml") == ["r"]
    assert calls == [("job.yaml", {"resume": True, "progress": False})]
    requeued = task.checkpoint("job.yaml")
    assert isinstance(requeued.function, slurm_glue.SiteRun) and requeued.args == ("job.yaml",)
