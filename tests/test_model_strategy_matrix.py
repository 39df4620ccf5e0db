"""Every generator under every federation strategy that applies to it, end to end under real `mpiexec -n 2`.

One job per model trains all of that model's strategies in one launch (the job takes a list of strategies and
writes `run-<strategy>.h5` for each, and a comparison file); each (model, strategy) pair is then its own test
that reads its run file: the rounds and their losses, the checkpoint, the synthetic tables against the real
cohort's schema and levels, the scores, and what the strategy itself promises (nothing exchanged when
isolated, one parameter buffer per round for FedAvg-like strategies (SCAFFOLD's with its control variates), a
bounded server step for FedOpt, a shared decoder with site encoders for latent alignment, two phases for
synthetic-data sharing, pooled counts for the Bayesian network). Pairs that the configuration refuses are
checked to be refused, naming the key.
Sizes are tiny (200 patients, two rounds, one-layer networks) so the whole matrix runs in about a minute.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from hpcsynth.config import ConfigError, from_dict
from hpcsynth.data.cohorts import load_cohort
from hpcsynth.data.sources import load_site
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.federated.registry import STRATEGIES
from hpcsynth.io.runfile import partial_path, read_table
from mpi_support import REPO, apply_overrides, mpiexec_path

RANKS = 2
SEED = 0
N_PATIENTS = 200
ROUNDS = 2
N_ROWS = 40  # synthetic rows each site samples
BATCH = 64
MU = 0.1  # fedprox
SERVER_LR = 1e-4  # fedopt: small, so that its step bound (see test) is below what a FedAvg round moves

# the model sections: tiny networks, every family's own options
MODELS = {
    "tvae": {"name": "tvae", "batch_size": BATCH, "hidden": [16], "latent_dim": 4},
    "vae_bgm": {"name": "vae_bgm", "batch_size": BATCH, "hidden": [16], "latent_dim": 4, "n_components": 3},
    "ctgan": {"name": "ctgan", "batch_size": 40, "embedding_dim": 8, "generator_dim": [16],
              "discriminator_dim": [16], "pac": 5},
    "ddpm": {"name": "ddpm", "batch_size": BATCH, "hidden": [16], "diffusion_steps": 20, "time_dim": 8},
    "bayesnet": {"name": "bayesnet", "n_bins": 4},
}
_GRADIENT = ["centralized", "isolated", "fedavg", "local_sgd", "fedprox", "fedopt", "feddyn", "fedavgm",
             "sd_sharing"]
_ONE_LR = [*_GRADIENT, "scaffold"]  # scaffold reads the model's one learning rate lr (CTGAN has one per network)
MATRIX = {  # the pairs the configuration accepts (test_the_config_accepts_exactly_the_matrix keeps this honest)
    "tvae": [*_ONE_LR, "latent_alignment"],
    "vae_bgm": [*_ONE_LR, "latent_alignment"],
    "ctgan": [*_GRADIENT, "fedbn"],  # fedbn: only a family with BatchNorm layers
    "ddpm": _ONE_LR,
    "bayesnet": ["centralized", "isolated", "fedavg"],
}
PAIRS = [(m, s) for m, strategies in MATRIX.items() for s in strategies]
REFUSED = [(m, s) for m in MODELS for s in STRATEGIES if s not in MATRIX[m]]
# one model for every site at the end
SHARED = {"centralized", "fedavg", "local_sgd", "fedprox", "fedopt", "scaffold", "feddyn", "fedavgm", "sd_sharing"}
REDUCTIONS_PER_STEP = {"ctgan": 2}  # gradient reductions per centralized step: critic and generator (else 1)


def job_mapping(model: str, strategies: list[str], output: Path, overrides: dict | None = None) -> dict:
    job = {
        "seed": SEED,
        "data": {"builtin": "mds", "n_patients": N_PATIENTS, "holdout": 0.2},
        "model": dict(MODELS[model]),
        "federation": {"strategy": list(strategies), "rounds": ROUNDS, "local_epochs": 1, "mu": MU,
                       "server_lr": SERVER_LR},
        "sample": {"n_rows": N_ROWS},
        "output": str(output),
        "progress": False,
    }
    return apply_overrides(job, overrides)


def launch(job: dict, folder: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """`mpiexec -n 2 hpcsynth run` on the job (written to `folder`); the completed process."""
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([mpiexec_path(), "-n", str(RANKS), sys.executable, "-W", "ignore", "-m", "hpcsynth.cli",
                           "run", str(path)], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


@pytest.fixture(scope="module")
def model_job(tmp_path_factory):
    """One `mpiexec` launch per model (all its strategies), run the first time a pair of that model asks."""
    done: dict[str, tuple[subprocess.CompletedProcess, Path, dict]] = {}

    def get(model: str):
        if model not in done:
            folder = tmp_path_factory.mktemp(f"matrix-{model}")
            job = job_mapping(model, MATRIX[model], folder / "run.h5")
            done[model] = (launch(job, folder), folder, job)
        return done[model]

    return get


@pytest.fixture(scope="module")
def real():
    """The cohort the jobs read (the same simulator call), without its id and site columns."""
    return load_cohort("mds", N_PATIENTS, RANKS, SEED).drop(columns=["patient_id", "site"])


def train_rows(job: dict) -> list[int]:
    """Every site's training rows, as the job splits them."""
    cfg = from_dict(job).data
    return [len(load_site(cfg, k, RANKS, SEED).train) for k in range(RANKS)]


def fresh_model(job: dict, transformer: TableTransformer):
    """The model every site starts from: the job's family and seed on the run's transformer."""
    from hpcsynth.models import make_model

    cfg = from_dict(job)
    model = make_model(dataclasses.asdict(cfg.model), cfg.seed, cfg.federation.rounds * cfg.local_epochs)
    return model.setup(transformer)


def open_run(model_job, model: str, strategy: str):
    result, folder, job = model_job(model)
    path = folder / f"run-{strategy}.h5"
    if not path.exists():
        pytest.fail(f"{model} x {strategy}: no run file (job exit {result.returncode})\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return h5py.File(path, "r"), job, folder


# -- the pairs the config refuses --------------------------------------------------------------------------------
def test_the_config_accepts_exactly_the_matrix():
    for model, strategy in itertools.product(MODELS, STRATEGIES):
        job = job_mapping(model, [strategy], Path("run.h5"))
        if strategy in MATRIX[model]:
            assert from_dict(job).strategies == [strategy]
        else:
            with pytest.raises(ConfigError):
                from_dict(job)


REFUSALS = [pytest.param({"model.name": m, "federation.strategy": s}, "federation.strategy", [s, m], id=f"{m}-{s}")
            for m, s in REFUSED]
REFUSALS += [  # a refused strategy inside a list of accepted ones
    pytest.param({"model.name": "bayesnet", "federation.strategy": ["centralized", "fedopt"]},
                 "federation.strategy", ["fedopt", "bayesnet"], id="bayesnet-in-a-list"),
    pytest.param({"model.name": "ctgan", "federation.strategy": ["fedavg", "latent_alignment"]},
                 "federation.strategy", ["latent_alignment", "ctgan"], id="ctgan-latent_alignment-in-a-list"),
]
REFUSALS += [pytest.param({"model.name": "bayesnet", "privacy": {"epsilon": 1.0}}, "privacy", ["bayesnet"],
                          id="bayesnet-privacy")]
REFUSALS += [  # DP-VAE-BGM fits its prior from the rows once; the mode-specific mixture has no private fit
    pytest.param({"model.name": "vae_bgm", "privacy": {"epsilon": 1.0}, "evaluation.every": 1}, "evaluation.every",
                 ["vae_bgm", "once"], id="vae_bgm-privacy-every"),
    pytest.param({"model.name": "vae_bgm", "model.numeric": "mode_specific",
                  "privacy": {"epsilon": 1.0, "statistics_share": 0.2}}, "model.numeric", ["mode_specific"],
                 id="vae_bgm-privacy-mode_specific"),
]
REFUSALS += [pytest.param({"model.name": "ctgan", "model.pac": 10, "privacy": {"epsilon": 1.0}}, "model.pac",
                          ["pac: 1"], id="ctgan-privacy-packed")]
REFUSALS += [pytest.param({"federation.strategy": ["fedavg", "latent_alignment"], "privacy": {"epsilon": 1.0}},
                          "privacy", ["latent_alignment", "latent moments"], id="latent_alignment-privacy")]
REFUSALS += [pytest.param({"model.name": "bayesnet", "federation.secure_aggregation": True},
                          "federation.secure_aggregation", ["counts"], id="bayesnet-secure_aggregation")]


@pytest.mark.parametrize("overrides, key, named", REFUSALS)
def test_a_pair_that_does_not_apply_is_a_config_error_naming_the_key(overrides, key, named):
    job = {"data": {"builtin": "mds"}, "model": {}, "federation": {}}
    with pytest.raises(ConfigError) as err:
        from_dict(apply_overrides(job, overrides), source="job.yaml")
    message = str(err.value)
    assert message.startswith(f"job.yaml: {key}: "), message
    assert all(word in message for word in named), message


@pytest.mark.parametrize("model", ["tvae", "ddpm", "ctgan", "vae_bgm"])
def test_the_models_that_take_dp_sgd_are_accepted_with_privacy(model):
    strategies = [s for s in MATRIX[model] if s != "latent_alignment"]
    cfg = from_dict(job_mapping(model, strategies, Path("run.h5"), {"privacy": {"epsilon": 1.0}, "model.pac": 1}))
    assert cfg.privacy.epsilon == 1.0


# -- every accepted pair, end to end --------------------------------------------------------------------------
@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("model", list(MATRIX))
def test_the_job_of_every_strategy_exits_cleanly_and_compares_them(model_job, model):
    result, folder, _ = model_job(model)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "hpcsynth: error" not in result.stderr
    with h5py.File(folder / "run.h5", "r") as f:
        assert f.attrs["kind"] == "comparison" and f.attrs["status"] == "complete"
        assert sorted(f["runs"]) == sorted(MATRIX[model])
        table = pd.DataFrame(f["comparison"][()])
        assert [s.decode() for s in table["strategy"]] == MATRIX[model]
    for strategy in MATRIX[model]:
        assert not partial_path(folder / f"run-{strategy}.h5").exists()


def check_table(group: h5py.Group, real: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A stored synthetic table: the schema's columns, levels within the real ones, values within the real range."""
    assert json.loads(group.attrs["columns"]) == columns
    table = read_table(group)
    for name in columns:
        ds, values, truth = group[name], table[name], real[name]
        assert not (values.isna().any() and not truth.isna().any()), f"{name}: missing values the data never has"
        if "labels" in ds.attrs:
            labels = json.loads(ds.attrs["labels"])
            codes = ds[()]
            assert codes.min() >= -1 and codes.max() < len(labels), name
            assert set(labels) <= set(truth.dropna().unique()), f"{name}: levels {labels} not in the data"
            assert set(values.dropna()) <= set(truth.dropna()), name
        else:
            numbers = values.to_numpy(dtype=float)
            present = numbers[~np.isnan(numbers)]
            assert np.isfinite(present).all(), name
            assert present.min(initial=truth.min()) >= truth.min() - 1e-9, f"{name}: below the data's range"
            assert present.max(initial=truth.max()) <= truth.max() + 1e-9, f"{name}: above the data's range"
            if ds.attrs["kind"] in ("integer", "binary"):
                assert np.array_equal(present, np.round(present)), f"{name}: not whole numbers"
    return table


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("model, strategy", PAIRS, ids=[f"{m}-{s}" for m, s in PAIRS])
def test_the_pair_trains_samples_and_scores(model_job, real, model, strategy):
    f, job, folder = open_run(model_job, model, strategy)
    with f:
        # the run itself
        assert f.attrs["kind"] == "run" and f.attrs["status"] == "complete"
        assert f.attrs["strategy"] == strategy and f.attrs["n_sites"] == RANKS
        assert f"name: {model}" in f["config"][()].decode()
        transformer = TableTransformer.from_state(f["schema/transformer"][()])
        columns = [spec.name for spec in transformer.schema_]
        assert columns == list(real.columns)
        assert set(f["schema"]) == {"transformer", *columns}

        # rounds: the planned number (two phases for sd_sharing; one exchange of counts for the Bayesian network)
        rounds = f["rounds"][()]
        planned = 1 if model == "bayesnet" else (2 * ROUNDS if strategy == "sd_sharing" else ROUNDS)
        assert rounds["round"].tolist() == list(range(planned))
        assert np.isfinite(rounds["loss"]).all() and (rounds["wall_s"] >= 0).all()
        assert (rounds["epsilon"] == 0).all()
        assert (rounds["steps"] == 0).all() if model == "bayesnet" else (rounds["steps"] > 0).all()

        # the checkpoint: one row per site unless the sites end with one model
        ckpt = f["checkpoint"]
        params = ckpt["params"][()]
        assert ckpt.attrs["round"] == planned - 1
        assert params.shape[0] == (1 if strategy in SHARED else RANKS)
        assert sorted(k for k in ckpt if k != "params") == [f"site_{k}" for k in range(RANKS)]
        for row in params:  # finite; isolated Bayesian networks may pad a shorter row with NaN at its end
            width = int(np.isfinite(row).sum())
            assert width > 0 and np.isfinite(row[:width]).all()

        # the synthetic tables: every site's requested rows, pooled in site order
        assert set(f["synthetic"]) == {"pooled", *(f"site_{k}" for k in range(RANKS))}
        sites = [check_table(f["synthetic"][f"site_{k}"], real, columns) for k in range(RANKS)]
        assert [len(t) for t in sites] == [N_ROWS] * RANKS
        pooled = check_table(f["synthetic/pooled"], real, columns)
        pd.testing.assert_frame_equal(pooled, pd.concat(sites, ignore_index=True))
        assert not sites[0].equals(sites[1])  # every site draws its own rows

        # the scores
        scores = dict(f["evaluation"].attrs)
        assert 0.0 < scores["quality"] <= 1.0
        assert all(np.isfinite(v) for v in scores.values())
        assert set(f["evaluation/directions"].attrs) == set(scores)

        check_strategy(model, strategy, job, folder, params, rounds, transformer)


def check_strategy(model, strategy, job, folder, params, rounds, transformer) -> None:
    """What the strategy promises, read from the run file (and its siblings of the same job)."""
    sent = rounds["bytes_reduced"].tolist()
    if model == "bayesnet":  # counts: shared ones are the pooled counts, so fedavg is centralized bit for bit
        assert len(sent) == 1 and (sent[0] == 0 if strategy == "isolated" else sent[0] > 0)
        if strategy == "isolated":
            assert not np.array_equal(params[0], params[1], equal_nan=True)
        if strategy == "fedavg":
            with h5py.File(folder / "run-centralized.h5", "r") as other:
                assert np.array_equal(params, other["checkpoint/params"][()])
        return
    buffer = 4 * params.shape[1]  # one float32 parameter buffer
    batch, sizes = MODELS[model]["batch_size"], train_rows(job)
    pooled_steps = math.ceil(sum(sizes) / min(batch, sum(sizes)))  # one pass over the pooled rows
    local_steps = math.ceil(sizes[0] / min(batch, sizes[0]))  # one pass over rank 0's rows (the rank that records)
    per_step = REDUCTIONS_PER_STEP.get(model, 1) * buffer
    if strategy == "centralized":  # data-parallel: one reduction of the gradient buffer per step
        assert rounds["steps"].tolist() == [pooled_steps] * ROUNDS
        assert sent == [per_step * pooled_steps] * ROUNDS
    elif strategy == "isolated":  # nothing leaves a site, and the sites end apart
        assert rounds["steps"].tolist() == [local_steps] * ROUNDS
        assert sent == [0] * ROUNDS
        assert not np.array_equal(params[0], params[1])
    elif strategy == "local_sgd":  # one pass over the pooled rows and one exchange of parameters and Adam moments
        assert rounds["steps"].tolist() == [pooled_steps] * ROUNDS
        assert sent == [buffer + 2 * 4 * int(fresh_model(job, transformer).trainable_mask().sum())] * ROUNDS
    elif strategy in ("fedavg", "fedprox", "fedopt", "scaffold", "feddyn", "fedavgm"):
        # one Allreduce per round: of the parameter buffer, and for scaffold of the control variates with it
        assert rounds["steps"].tolist() == [local_steps] * ROUNDS
        variates = 4 * int(fresh_model(job, transformer).trainable_mask().sum()) if strategy == "scaffold" else 0
        assert sent == [buffer + variates] * ROUNDS
        with h5py.File(folder / "run-fedavg.h5", "r") as other:
            fedavg = other["checkpoint/params"][()]
        fresh = fresh_model(job, transformer)
        start = fresh.shared_parameters().detach().numpy()
        assert np.abs(fedavg[0] - start).max() > 0  # training moved the shared model
        if strategy in ("fedprox", "scaffold", "feddyn", "fedavgm"):  # the local or the server steps changed
            assert not np.array_equal(params, fedavg)
        if strategy == "fedopt":
            # FedAdam without bias correction moves each trained parameter by at most server_lr * |m| / sqrt(v)
            # per round: 1 after the first round, sqrt(0.09^2 / 0.0099 + 0.1^2 / 0.01) < 1.35 after the second;
            # statistics (CTGAN's BatchNorm running moments) take FedAvg's plain average instead
            trained = fresh.trainable_mask().numpy()
            bound = SERVER_LR * (1 + 1.35) * (1 + 1e-3) + 1e-7
            assert np.abs(params[0] - start)[trained].max() <= bound
            assert np.abs(fedavg[0] - start)[trained].max() > bound  # so the bound says something
            if not trained.all():
                assert np.abs(params[0] - start)[~trained].max() > bound  # the statistics moved as averages
    elif strategy == "sd_sharing":  # local rounds exchange nothing; then data-parallel on the pooled synthetic rows
        assert sent[:ROUNDS] == [0] * ROUNDS
        assert rounds["steps"].tolist() == [local_steps] * ROUNDS + [pooled_steps] * ROUNDS
        assert sent[ROUNDS:] == [per_step * pooled_steps] * ROUNDS
    elif strategy == "fedbn":  # one Allreduce of the buffer; the sites keep their own BatchNorm entries
        assert rounds["steps"].tolist() == [local_steps] * ROUNDS and sent == [buffer] * ROUNDS
        local = fresh_model(job, transformer).normalisation_mask().numpy()
        assert local.any() and not np.array_equal(params[0, local], params[1, local])
        assert np.array_equal(params[0, ~local], params[1, ~local])
    elif strategy == "latent_alignment":  # site encoders, one decoder: only the decoder and the moments are summed
        encoder = sum(p.numel() for p in fresh_model(job, transformer).encoder_.parameters())
        assert not np.array_equal(params[0, :encoder], params[1, :encoder])
        assert np.array_equal(params[0, encoder:], params[1, encoder:])
        moments = 8 * (1 + 2 * MODELS[model]["latent_dim"])  # count, sums and sums of squares, float64
        assert sent == [4 * (params.shape[1] - encoder) + moments] * ROUNDS
    else:
        raise AssertionError(f"no strategy check for {strategy}")


# -- the options that apply across strategies: secure aggregation and DP-SGD ------------------------------------
@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("strategy, private", [("sd_sharing", True), ("latent_alignment", False)])
def test_secure_aggregation_and_dp_sgd_cover_every_exchange_of_the_strategies(tmp_path, real, strategy, private):
    """Masked sums are 8 bytes a value, for the shared decoder and latent moments of latent_alignment and the
    second phase of sd_sharing too (the parameter-averaging strategies: tests/federated/test_strategies.py); with
    DP-SGD (which latent_alignment refuses) every site spends at most its budget, and sd_sharing's shared model
    reports the site models' spend."""
    options = {"federation.secure_aggregation": True}
    if private:
        options["privacy"] = {"epsilon": 5.0, "delta": 1e-5}
    job = job_mapping("tvae", [strategy], tmp_path / "run.h5", options)
    result = launch(job, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with h5py.File(tmp_path / "run.h5", "r") as f:
        rounds, params = f["rounds"][()], f["checkpoint/params"][()]
        check_table(f["synthetic/pooled"], real, list(real.columns))
        sent = rounds["bytes_reduced"].tolist()
        masked = 8 * params.shape[1]
        if strategy == "sd_sharing":
            assert sent[:ROUNDS] == [0] * ROUNDS
            assert sent[ROUNDS:] == [masked * int(s) for s in rounds["steps"][ROUNDS:]]
        else:
            encoder = sum(p.numel() for p in fresh_model(
                job, TableTransformer.from_state(f["schema/transformer"][()])).encoder_.parameters())
            assert sent == [8 * (params.shape[1] - encoder) + 8 * (1 + 2 * MODELS["tvae"]["latent_dim"])] * ROUNDS
        if private:
            spent = np.asarray(f["privacy"].attrs["epsilon_spent"])
            assert spent.shape == (RANKS,) and (spent > 0).all() and (spent <= 5.0 * (1 + 1e-6)).all()
            epsilon = rounds["epsilon"]
            assert (np.diff(epsilon) >= 0).all() and epsilon[-1] == pytest.approx(spent.max())
