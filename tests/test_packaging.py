"""The package as installed from a wheel: built offline from a copy of the checkout, installed in a scratch
virtual environment outside it (the dependencies come from this one), where `hpcsynth submit --sbatch
--dry-run` renders the packaged template from a folder that is not a checkout."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from mpi_support import REPO

NOT_BUILT = (".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
             ".ruff_cache", ".hypothesis", "tests", "benchmarks", "docs")


def _run(command: list, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert done.returncode == 0, f"{' '.join(map(str, command))}:\n{done.stdout}{done.stderr}"
    return done


def test_pyproject_lists_every_subpackage():
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(("hpcsynth", *p.parent.relative_to(REPO / "hpcsynth").parts))
             for p in (REPO / "hpcsynth").rglob("__init__.py")}
    assert found <= set(setuptools["packages"]), "add the new subpackages to pyproject.toml"
    assert {"hpcsynth.kernels": "kernels", "hpcsynth.jobs": "jobs", "hpcsynth.slurm": "slurm"}.items() \
        <= setuptools["package-dir"].items()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (so the build writes nothing into the checkout)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_BUILT))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--disable-pip-version-check", "-q", "-w", work / "dist", source])
    (built,) = (work / "dist").glob("hpcsynth-*.whl")
    return built


@pytest.fixture(scope="module")
def scratch(wheel, tmp_path_factory) -> Path:
    """A virtual environment outside the checkout with the wheel installed; its other packages come from this
    environment's site-packages through a .pth file (the editable install's finder is not loaded there)."""
    venv = tmp_path_factory.mktemp("scratch") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", "-q", wheel])
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    (Path(site) / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _outside_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


@pytest.mark.slow
def test_the_wheel_holds_the_package_its_templates_and_the_license_and_no_checkout_scripts(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {"hpcsynth/cli.py", "hpcsynth/kernels/api.py", "hpcsynth/jobs/train.py", "hpcsynth/jobs/demo.yaml",
            "hpcsynth/slurm/cpu.sbatch", "hpcsynth/slurm/gpu.sbatch"} <= set(names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if n.endswith(("local-cluster.sh", "sacct")) or n.startswith(("tests/", "slurm/"))]


@pytest.mark.slow
def test_submit_dry_run_renders_the_packaged_template_from_an_installed_wheel(scratch, write_job, tmp_path):
    where = _run([scratch / "bin" / "python", "-c", "import sys, hpcsynth.slurm as s; print(s.__file__); "
                  "print('\\n'.join(sys.path))"], cwd=tmp_path, env=_outside_env()).stdout.splitlines()
    assert Path(where[0]).is_relative_to(scratch)
    assert str(REPO) not in where[1:]  # the checkout is not on the path: its hpcsynth cannot be imported
    job = write_job({"data.n_sites": 2})
    done = _run([scratch / "bin" / "hpcsynth", "submit", job, "--sbatch", "--dry-run", "--ntasks-per-node", "2",
                 "--job-name", "wheel"], cwd=tmp_path, env=_outside_env())
    assert "#SBATCH --ntasks-per-node=2" in done.stdout and "#SBATCH --job-name=wheel" in done.stdout
    assert "srun --mpi=pmi2 hpcsynth run --resume --no-progress" in done.stdout
    assert (tmp_path / "runs" / "slurm" / "wheel.sbatch").read_text() == done.stdout
