"""A job array over strategies on the real local cluster, merged into one table by `collect`."""
from __future__ import annotations

from hpcsynth.collect import collect
from slurm_support import run_cli


def test_job_array_over_strategies_is_collected_into_one_table(slurm_job, tmp_path):
    job = slurm_job({"data.n_sites": 2})  # two sites per task keep the array quick on a small machine
    submit = run_cli(["submit", str(job), "--ntasks-per-node", "2", "--sbatch",
                      "--array", "federation.strategy=centralized,isolated,fedavg"], cwd=tmp_path, timeout=60)
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip()
    status = run_cli(["status", job_id, "--wait", "--timeout", "200"], cwd=tmp_path, timeout=240)
    assert status.returncode == 0, status.stdout + status.stderr
    final = status.stdout.strip().splitlines()[-3:]
    assert sorted(final) == [f"{job_id}_{i} COMPLETED" for i in range(3)]
    rendered = (tmp_path / "runs" / "slurm" / f"hpcsynth-{job_id}.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=2" in rendered and "srun --mpi=pmi2" in rendered

    table = collect(sorted((tmp_path / "runs").glob("job-strategy-*.h5")))
    assert sorted(table["strategy"]) == ["centralized", "fedavg", "isolated"]
    assert (table["status"] == "complete").all() and (table["n_sites"] == 2).all()
    assert (table["rounds"] == 2).all()
    assert table["quality"].between(0, 1).all()
    by_strategy = table.set_index("strategy")
    assert by_strategy.loc["isolated", "round_bytes_reduced"] == 0  # isolated sites exchange nothing
    assert by_strategy.loc["fedavg", "round_bytes_reduced"] > 0
