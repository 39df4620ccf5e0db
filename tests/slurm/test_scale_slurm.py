"""`hpcsynth scale --slurm` on the real local cluster: one job per rank count, measured from their run files."""
from __future__ import annotations

import pandas as pd

from tests.slurm.conftest import run_cli


def test_a_strong_scaling_study_runs_one_slurm_job_per_rank_count(slurm_job, tmp_path):
    job = slurm_job()
    done = run_cli(["scale", str(job), "--ranks", "1,2", "--mode", "strong", "--slurm", "--time", "00:10:00",
                    "--folder", "scale"], cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    table = pd.read_csv(tmp_path / "scale" / "strong.csv")
    assert list(table["ranks"]) == [1, 2]
    assert (table["strategy"] == "fedavg").all()
    scripts = sorted(p.name for p in (tmp_path / "scale").glob("hpcsynth-p*-*.sbatch"))
    assert [s.split("-")[1] for s in scripts] == ["p1", "p2"]
    assert "#SBATCH --ntasks-per-node=2" in next((tmp_path / "scale").glob("hpcsynth-p2-*.sbatch")).read_text()
    assert (tmp_path / "scale" / "strong.png").stat().st_size > 0
