"""The training job's own options: `model.compile_cache` and `model.sampler` from the job file to the model."""
import pytest

from hpcsynth.config import ConfigError, from_dict
from hpcsynth.jobs.train import use_job_compile_cache
from hpcsynth.models import make_model
from hpcsynth.models.compiled import CACHE_ENV, default_cache_dir


def job(model: dict) -> dict:
    return {"data": {"builtin": "mds"}, "model": model, "federation": {"strategy": "fedavg"}}


def test_the_job_compile_cache_becomes_the_directory_compiled_steps_are_kept_in(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "from-the-environment"))
    use_job_compile_cache(from_dict(job({"name": "tvae"})))
    assert default_cache_dir() == tmp_path / "from-the-environment"  # no key: the environment's
    use_job_compile_cache(from_dict(job({"name": "tvae", "compile_cache": str(tmp_path / "shared")})))
    assert default_cache_dir() == tmp_path / "shared"


def test_the_job_sampler_reaches_tabddpm_and_a_wrong_one_names_the_key():
    cfg = from_dict(job({"name": "ddpm", "sampler": "ddim", "sample_steps": 20}))
    model = make_model(vars(cfg.model), cfg.seed, 1)
    assert (model.sampler, model.sample_steps) == ("ddim", 20)
    with pytest.raises(ConfigError, match="model.sampler: expected one of ddim, ancestral, got 'euler'"):
        from_dict(job({"name": "ddpm", "sampler": "euler"}), source="job.yaml")
