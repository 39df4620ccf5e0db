"""Typed run configuration, loaded from YAML and validated before any work starts.

Every rank reads and validates the same file, so a bad config stops all ranks with the same one-line message
(naming the key) before a single row is read or an MPI collective is entered. The tree of dataclasses below
is the whole vocabulary of a job file: an unknown key is an error, not silently ignored, because a misspelt
`local_epoch` that is ignored would run a different experiment than the one the user meant.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from hpcsynth.data.cohorts import COHORTS
from hpcsynth.data.declaration import TIME_UNITS, DataConfig, PartitionConfig
from hpcsynth.data.longitudinal import LONGITUDINAL
from hpcsynth.data.partition import KINDS as PARTITION_KINDS
from hpcsynth.federated.registry import STRATEGIES
from hpcsynth.federated.wrappers import SecureAggregation, SiteParallel
from hpcsynth.messages import ConfigError
from hpcsynth.models import MODELS, SEQUENCE_MODELS
from hpcsynth.models.bayesnet import NOISES as DP_NOISES
from hpcsynth.models.bayesnet import STRUCTURES as BAYESNET_STRUCTURES
from hpcsynth.models.ddpm import SAMPLERS as DDPM_SAMPLERS

BUILTIN_DATASETS = (*COHORTS, *LONGITUDINAL)
COLUMN_KINDS = ("binary", "integer", "continuous", "categorical", "datetime")


@dataclass
class ModelConfig:
    """The generator and its hyperparameters (sizes as in SDV's TVAE unless said otherwise)."""

    name: str = "tvae"
    epochs: int | None = None
    batch_size: int = 500
    hidden: list[int] | None = None  # the family's default: TVAE 128-128 (SDV), diffusion 256-256 (TabDDPM)
    latent_dim: int = 64
    gru_dim: int | None = None  # sequence_vae: the GRUs' state width
    max_visits: int | None = None  # sequence_vae: an upper bound on the visits a patient's row holds
    lr: float = 1e-3
    weight_decay: float = 1e-5
    loss_factor: float = 2.0
    device: str = "auto"
    # bayesnet (hpcsynth.models.bayesnet); epsilon turns on its PrivBayes-style noisy counts
    n_bins: int | None = None
    time_bins: int | None = None  # the survival time node's bins (with data.time and data.event)
    structure: str | None = None
    max_parents: int | None = None
    prior: float | None = None
    epsilon: float | None = None
    delta: float | None = None
    noise: str | None = None
    # ddpm (hpcsynth.models.ddpm)
    diffusion_steps: int | None = None
    sample_steps: int | None = None
    sampler: str | None = None  # ancestral | ddim (respaced reverse steps)
    time_dim: int | None = None
    # ctgan (hpcsynth.models.ctgan; SDV's defaults when None); it trains with generator_lr and
    # discriminator_lr, not lr
    embedding_dim: int | None = None
    generator_dim: list[int] | None = None
    discriminator_dim: list[int] | None = None
    generator_lr: float | None = None
    generator_decay: float | None = None
    discriminator_lr: float | None = None
    discriminator_decay: float | None = None
    discriminator_steps: int | None = None
    pac: int | None = None
    precision: str | None = None
    compile: bool | str | None = None  # auto (long CPU runs) | on | off (YAML's true/false too): torch.compile
    # where compiled steps are kept for the next process (default $HPCSYNTH_COMPILE_CACHE, else
    # ~/.cache/hpcsynth/compile); a directory every rank can reach, such as one on the shared filesystem
    compile_cache: str | None = None
    # vae_bgm (hpcsynth.models.vae_bgm): components of the latent mixture prior; with privacy, its DP-EM fit's
    # noise multiplier, iterations and L2 clipping bound
    n_components: int | None = None
    prior_noise_multiplier: float | None = None
    prior_iterations: int | None = None
    prior_clip: float | None = None
    # any family: the numeric transform (quantile, or mode_specific as CTGAN's default)
    numeric: str | None = None


@dataclass
class FederationConfig:
    """How sites combine: the strategy (or a list of them to compare in one job) and the round schedule."""

    strategy: str | list[str] = "fedavg"
    rounds: int = 5
    local_epochs: int | None = None
    mu: float = 0.01  # fedprox: weight of the proximal term mu/2 ||theta - theta_global||^2
    server_lr: float = 0.01  # fedopt: the server's Adam learning rate
    feddyn_alpha: float = 0.01  # feddyn: weight of the dynamic regulariser
    server_momentum: float = 0.9  # fedavgm: the server momentum beta
    server_lr_momentum: float = 1.0  # fedavgm: the server step size (server_lr is fedopt's Adam rate)
    secure_aggregation: bool = False  # pairwise-masked aggregation (hpcsynth.federated.secure)
    ranks_per_site: int = 1  # ranks of one site train data-parallel (hpcsynth.federated.wrappers.SiteParallel)
    sites_per_rank: int = 1  # virtual sites hosted by every rank, in turn (hpcsynth.virtual_sites)
    alignment_weight: float = 1.0  # latent_alignment: weight of the latent-moment matching penalty


@dataclass
class PrivacyConfig:
    """Differential privacy of every site's training (DP-SGD): the budget and the clipping norm."""

    epsilon: float = 1.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: str = "rdp"
    statistics_share: float = 0.0  # of epsilon, spent on noising the transform statistics (0: they are exact)


@dataclass
class SampleConfig:
    """How many synthetic rows each site generates at the end."""

    n_rows: int | None = None


@dataclass
class EvaluationConfig:
    """When the job scores its release during training (`hpcsynth.evaluate.metrics.per_round`).

    every: every this many rounds, and after the last; None (the default): after the last round only.
    """

    every: int | None = None


@dataclass
class RunConfig:
    """One job: data, model, federation, sampling, evaluation, seed and the run file."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    privacy: PrivacyConfig | None = None
    seed: int = 0
    output: str = "runs/run.h5"
    progress: bool = True
    source: str = "<dict>"
    text: str = ""

    @property
    def strategies(self) -> list[str]:
        """The strategies this job trains, in order (one unless a comparison was asked for)."""
        s = self.federation.strategy
        return [s] if isinstance(s, str) else list(s)

    @property
    def local_epochs(self) -> int:
        """Epochs of local data per round: given, or the model's epochs spread over the rounds."""
        fed = self.federation
        if fed.local_epochs is not None:
            return fed.local_epochs
        if self.model.epochs is not None:
            return max(1, -(-self.model.epochs // fed.rounds))
        return 10


_INTERNAL = {"source", "text"}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}s"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        if len(args) == 2 and type(None) in args:  # Optional[X]: X's own error names the exact key
            return _coerce(value, next(a for a in args if a is not type(None)), key)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {_coerce(k, str, key): _coerce(v, typing.get_args(tp)[1], f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
        return [_coerce(v, typing.get_args(tp)[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of options, got {value!r}")
        return _build(tp, value, key + ".")
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (str, bool) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")


def _build(cls: type, mapping: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in _INTERNAL]
    kwargs = {}
    for key, value in mapping.items():
        if key not in names:
            raise ConfigError(f"{prefix}{key}: unknown option (known: {', '.join(names)})")
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    return cls(**kwargs)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_data(d: DataConfig) -> None:
    given = [k for k in ("builtin", "path", "sites") if getattr(d, k) is not None]
    _require(len(given) == 1, f"data: give exactly one of builtin, path or sites (got {', '.join(given) or 'none'})")
    if d.builtin is not None:
        _require(d.builtin in BUILTIN_DATASETS,
                 f"data.builtin: unknown dataset {d.builtin!r} (known: {', '.join(BUILTIN_DATASETS)})")
    if d.sites is not None:
        _require(len(d.sites) > 0, "data.sites: give at least one file")
        _require(d.n_sites in (None, len(d.sites)),
                 f"data.n_sites: {d.n_sites} but data.sites lists {len(d.sites)} files")
    if d.n_sites is not None:
        _require(d.n_sites >= 1, f"data.n_sites: must be at least 1, got {d.n_sites}")
    _require(d.n_patients >= 1, f"data.n_patients: must be at least 1, got {d.n_patients}")
    for column, kind in d.kinds.items():
        _require(kind in COLUMN_KINDS, f"data.kinds.{column}: unknown kind {kind!r} (known: {', '.join(COLUMN_KINDS)})")
    if d.partition is not None:
        _check_partition(d.partition, d)
    _check_sequence(d)
    _require(0.0 <= d.holdout < 1.0, f"data.holdout: must be in [0, 1), got {d.holdout}")
    _require(0.0 <= d.validation < 1.0, f"data.validation: must be in [0, 1), got {d.validation}")
    _require(isinstance(d.zero_time, (int, float)) and math.isfinite(d.zero_time) and d.zero_time > 0,
             f"data.zero_time: must be a positive number of the time column's units, got {d.zero_time!r}")
    _require(d.time_unit is None or d.time_unit in TIME_UNITS,
             f"data.time_unit: expected one of {', '.join(TIME_UNITS)}, got {d.time_unit!r}")
    _require(d.time_unit is None or d.time is not None or d.builtin is not None,
             "data.time_unit: names the unit of data.time, which is not given")
    for column, bound in d.bounds.items():
        _require(len(bound) == 2 and all(map(math.isfinite, bound)) and bound[0] < bound[1],
                 f"data.bounds.{column}: expected [low, high] with finite low < high, got {bound}")
    for column, labels in d.levels.items():
        _require(len(labels) > 0 and len(set(labels)) == len(labels),
                 f"data.levels.{column}: expected a non-empty list of distinct levels, got {labels}")


def _check_sequence(d: DataConfig) -> None:
    """data.sequence and data.context: both columns named, all distinct; a named longitudinal cohort declares
    its own, a named one-row-per-patient cohort has none (the columns themselves are checked when read)."""
    if d.builtin in LONGITUDINAL:
        _require(d.sequence is None and not d.context,
                 f"data.sequence: builtin {d.builtin} declares its own key, index and context; remove "
                 f"data.{'sequence' if d.sequence is not None else 'context'}")
        return
    if d.sequence is None:
        _require(not d.context, "data.context: names the static columns of data.sequence, which is not given")
        return
    _require(d.builtin is None, f"data.sequence: builtin {d.builtin} has one row per patient (longitudinal: "
                                f"{', '.join(LONGITUDINAL)})")
    s = d.sequence
    _require(s.key is not None, "data.sequence.key: required (the patient identifier column)")
    _require(s.index is not None, "data.sequence.index: required (the visit time column: days or datetimes)")
    _require(s.key != s.index, f"data.sequence.index: {s.index!r} is also data.sequence.key")
    for column in d.context:
        _require(column not in (s.key, s.index),
                 f"data.context: {column!r} is data.sequence.{'key' if column == s.key else 'index'}")
    twice = sorted({c for c in d.context if d.context.count(c) > 1})
    _require(not twice, f"data.context: {twice[0] if twice else ''!r} listed twice")
    for column, levels in s.ends.items():
        _require(column not in (s.key, s.index, *d.context),
                 f"data.sequence.ends.{column}: names a per-visit column, not the key, the index or a context column")
        _require(isinstance(levels, list) and len(levels) > 0,
                 f"data.sequence.ends.{column}: expected a non-empty list of the levels that end follow-up")


def _check_partition(p: PartitionConfig, d: DataConfig) -> None:
    _require(p.kind in PARTITION_KINDS,
             f"data.partition.kind: unknown partitioner {p.kind!r} (known: {', '.join(PARTITION_KINDS)})")
    _require(d.sites is None, "data.partition: splits one table; it cannot be used with data.sites")
    _require(p.kind not in ("dirichlet", "covariate") or p.column is not None,
             f"data.partition.column: the {p.kind} partitioner needs a column")
    _require(p.alpha > 0, f"data.partition.alpha: must be positive, got {p.alpha}")
    _require(p.n_sites is None or p.n_sites >= 1, f"data.partition.n_sites: must be at least 1, got {p.n_sites}")
    _require(p.n_sites is None or d.n_sites is None or p.n_sites == d.n_sites,
             f"data.partition.n_sites: {p.n_sites} disagrees with data.n_sites {d.n_sites}")


def _check_model(m: ModelConfig) -> None:
    _require(m.name in MODELS or m.name in SEQUENCE_MODELS,
             f"model.name: unknown model {m.name!r} (known: {', '.join([*MODELS, *SEQUENCE_MODELS])})")
    _require(m.epochs is None or m.epochs >= 1, f"model.epochs: must be at least 1, got {m.epochs}")
    _require(m.batch_size >= 2, f"model.batch_size: must be at least 2, got {m.batch_size}")
    _require(m.hidden is None or (len(m.hidden) >= 1 and all(h >= 1 for h in m.hidden)),
             f"model.hidden: layer sizes must be positive, got {m.hidden}")
    _check_bayesnet_ddpm(m)
    _check_ctgan(m)
    _check_vae_bgm(m)
    _require(m.latent_dim >= 1, f"model.latent_dim: must be at least 1, got {m.latent_dim}")
    _require(m.lr > 0, f"model.lr: must be positive, got {m.lr}")
    _require(m.weight_decay >= 0, f"model.weight_decay: must be non-negative, got {m.weight_decay}")
    _require(m.loss_factor > 0, f"model.loss_factor: must be positive, got {m.loss_factor}")
    _require(m.device == "auto" or m.device == "cpu" or m.device.startswith("cuda"),
             f"model.device: expected auto, cpu or cuda[:N], got {m.device!r}")


def _check_bayesnet_ddpm(m: ModelConfig) -> None:
    for key in ("n_bins", "time_bins", "max_parents", "diffusion_steps", "sample_steps", "time_dim"):
        value, least = getattr(m, key), 2 if key in ("n_bins", "time_bins") else 1
        _require(value is None or value >= least, f"model.{key}: must be at least {least}, got {value}")
    for key in ("prior", "epsilon"):
        _require(getattr(m, key) is None or getattr(m, key) > 0,
                 f"model.{key}: must be positive, got {getattr(m, key)}")
    _require(m.delta is None or 0 < m.delta < 1, f"model.delta: must be in (0, 1), got {m.delta}")
    _require(m.structure in (None, *BAYESNET_STRUCTURES),
             f"model.structure: expected one of {', '.join(BAYESNET_STRUCTURES)}, got {m.structure!r}")
    _require(m.noise in (None, *DP_NOISES), f"model.noise: expected one of {', '.join(DP_NOISES)}, got {m.noise!r}")
    _require(m.sampler in (None, *DDPM_SAMPLERS),
             f"model.sampler: expected one of {', '.join(DDPM_SAMPLERS)}, got {m.sampler!r}")


def _check_ctgan(m: ModelConfig) -> None:
    for key in ("embedding_dim", "discriminator_steps", "pac"):
        _require(getattr(m, key) is None or getattr(m, key) >= 1,
                 f"model.{key}: must be at least 1, got {getattr(m, key)}")
    for key in ("generator_dim", "discriminator_dim"):
        sizes = getattr(m, key)
        _require(sizes is None or (len(sizes) >= 1 and all(h >= 1 for h in sizes)),
                 f"model.{key}: layer sizes must be positive, got {sizes}")
    for key in ("generator_lr", "discriminator_lr"):
        _require(getattr(m, key) is None or getattr(m, key) > 0,
                 f"model.{key}: must be positive, got {getattr(m, key)}")
    for key in ("generator_decay", "discriminator_decay"):
        _require(getattr(m, key) is None or getattr(m, key) >= 0,
                 f"model.{key}: must be non-negative, got {getattr(m, key)}")
    _require(m.precision in (None, "auto", "bf16", "fp32"),
             f"model.precision: expected auto, bf16 or fp32, got {m.precision!r}")
    _require(m.compile in (None, True, False, "auto", "on", "off"),
             f"model.compile: expected auto, on or off, got {m.compile!r}")
    _require(m.numeric in (None, "quantile", "mode_specific"),
             f"model.numeric: expected quantile or mode_specific, got {m.numeric!r}")


def _check_vae_bgm(m: ModelConfig) -> None:
    for key in ("prior_noise_multiplier", "prior_clip"):
        _require(getattr(m, key) is None or getattr(m, key) > 0,
                 f"model.{key}: must be positive, got {getattr(m, key)}")
    _require(m.prior_iterations is None or m.prior_iterations >= 1,
             f"model.prior_iterations: must be at least 1, got {m.prior_iterations}")


def _check_federation(f: FederationConfig) -> None:
    strategies = [f.strategy] if isinstance(f.strategy, str) else f.strategy
    _require(len(strategies) > 0, "federation.strategy: give a strategy or a non-empty list of them")
    for s in strategies:
        _require(s in STRATEGIES, f"federation.strategy: unknown strategy {s!r} (known: {', '.join(STRATEGIES)})")
    _require(len(set(strategies)) == len(strategies), f"federation.strategy: listed twice in {strategies}")
    _require(f.rounds >= 1, f"federation.rounds: must be at least 1, got {f.rounds}")
    _require(f.local_epochs is None or f.local_epochs >= 1,
             f"federation.local_epochs: must be at least 1, got {f.local_epochs}")
    _require(f.mu >= 0, f"federation.mu: must be non-negative, got {f.mu}")
    _require(f.server_lr > 0, f"federation.server_lr: must be positive, got {f.server_lr}")
    _require(f.feddyn_alpha > 0, f"federation.feddyn_alpha: must be positive, got {f.feddyn_alpha}")
    _require(0 <= f.server_momentum < 1, f"federation.server_momentum: must be in [0, 1), got {f.server_momentum}")
    _require(f.server_lr_momentum > 0, f"federation.server_lr_momentum: must be positive, got {f.server_lr_momentum}")


def _check_privacy(p: PrivacyConfig) -> None:
    _require(p.epsilon > 0, f"privacy.epsilon: must be positive, got {p.epsilon}")
    _require(0 < p.delta < 1, f"privacy.delta: must be in (0, 1), got {p.delta}")
    _require(p.max_grad_norm > 0, f"privacy.max_grad_norm: must be positive, got {p.max_grad_norm}")
    _require(p.accountant in ("rdp", "prv"), f"privacy.accountant: expected rdp or prv, got {p.accountant!r}")
    _require(0.0 <= p.statistics_share < 1.0, f"privacy.statistics_share: must be in [0, 1), got {p.statistics_share}")


def _names(registry: dict[str, type], keep) -> str:
    """The names in `registry` whose class `keep` accepts, comma-separated (for messages)."""
    return ", ".join(name for name, cls in registry.items() if keep(cls))


def _check_combinations(cfg: RunConfig) -> None:
    """Model, strategy and option combinations that do not apply, refused before any work rather than run as
    something else; every rule reads what the generator, the strategy or the wrapper declares."""
    m, f = cfg.model, cfg.federation
    longitudinal = cfg.data.builtin in LONGITUDINAL or cfg.data.sequence is not None
    _require(longitudinal == (m.name in SEQUENCE_MODELS),
             f"model.name: {m.name} " + (f"models one row per patient; the data are visits (use "
                                        f"{', '.join(SEQUENCE_MODELS)})" if longitudinal else
                                        "models visit sequences; the data have one row per patient (give "
                                        "data.sequence, or a longitudinal builtin)"))
    model = {**MODELS, **SEQUENCE_MODELS}[m.name]
    learns = {"counts": "exchanges counts", "gradients": "trains by gradient steps"}[model.trains_by]
    for s in cfg.strategies:
        strategy = STRATEGIES[s]
        _require(model.trains_by in strategy.trains,
                 f"federation.strategy: {s} does not apply to model.name {m.name}, which {learns} "
                 f"(use {_names(STRATEGIES, lambda c: model.trains_by in c.trains)})")
        _require(not strategy.needs_lr or model.one_lr,
                 f"federation.strategy: {s} needs the model's one learning rate lr, which model.name {m.name} "
                 f"does not have (use {_names(MODELS, lambda c: c.one_lr)})")
        _require(not strategy.needs_normalisation or model.normalised,
                 f"federation.strategy: {s} keeps the BatchNorm layers local "
                 f"({_names(MODELS, lambda c: c.normalised)}); model.name {m.name} has none")
        _require(not strategy.needs_latent or model.has_latent,
                 f"federation.strategy: {s} needs an encoder and a decoder "
                 f"({_names(MODELS, lambda c: c.has_latent)}), not model.name {m.name}")
        _require(not f.secure_aggregation or strategy.supports_secure_aggregation,
                 f"federation.secure_aggregation: does not apply to federation.strategy {s}")
        _require(f.ranks_per_site == 1 or not strategy.site_parallel_gap,
                 f"federation.ranks_per_site: {f.ranks_per_site} does not apply to federation.strategy {s}: "
                 f"{strategy.site_parallel_gap}")
        _require(f.ranks_per_site == 1 or strategy.data_parallel or not model.batch_coupled,
                 f"federation.ranks_per_site: {f.ranks_per_site} does not apply to model.name {m.name} with "
                 f"federation.strategy {s}: its batch statistics would see one rank's share of the site's batch")
        _require(cfg.privacy is None or not strategy.dp_sgd_gap,
                 f"privacy: federation.strategy {s} exchanges {strategy.dp_sgd_gap}, which DP-SGD does not cover")
    _require(not f.secure_aggregation or model.trains_by in SecureAggregation.trains,
             f"federation.secure_aggregation: masks apply to parameter and gradient buffers; model.name {m.name} "
             f"{learns}, which are not masked")
    _require(cfg.privacy is None or cfg.privacy.statistics_share == 0
             or (m.numeric or model.default_numeric) != "mode_specific",
             "model.numeric: mode_specific has no private fit of its mixture; use quantile with privacy "
             "(or privacy.statistics_share: 0)")
    _require(cfg.privacy is None or m.name != "ctgan" or m.pac == 1,
             f"model.pac: DP-CTGAN's critic scores one row at a time; set model.pac: 1 with privacy "
             f"(got {m.pac or 'the default, 10'})")
    _require(cfg.privacy is None or cfg.evaluation.every is None or not model.private_finish,
             f"evaluation.every: a private {m.name} fits its sampling prior on the rows once, for the release, as "
             f"its budget plans; per-round evaluation would fit it again (leave evaluation.every out with privacy)")
    _require(cfg.privacy is None or model.dp_sgd,
             f"privacy: DP-SGD applies to {_names(MODELS, lambda c: c.dp_sgd)}, not model.name {m.name}"
             + (" (its own model.epsilon gives noisy counts)" if model.trains_by == "counts" else ""))
    _require(m.epsilon is None or f.ranks_per_site == 1,
             "model.epsilon: every rank noises the counts it adds, so federation.ranks_per_site > 1 would give a "
             "site more noise than its budget asks for")
    _require(cfg.privacy is None or f.ranks_per_site == 1 or not SiteParallel.dp_sgd_gap,
             f"privacy: not available with federation.ranks_per_site > 1 ({SiteParallel.dp_sgd_gap})")


def validate(cfg: RunConfig) -> RunConfig:
    """Check values that types alone cannot (ranges, choices, exclusive options); return `cfg`."""
    _check_data(cfg.data)
    _check_model(cfg.model)
    _check_federation(cfg.federation)
    _require(cfg.sample.n_rows is None or cfg.sample.n_rows >= 1,
             f"sample.n_rows: must be at least 1, got {cfg.sample.n_rows}")
    _require(cfg.evaluation.every is None or cfg.evaluation.every >= 1,
             f"evaluation.every: must be at least 1, got {cfg.evaluation.every}")
    if cfg.privacy is not None:
        _check_privacy(cfg.privacy)
    _require(cfg.federation.ranks_per_site >= 1,
             f"federation.ranks_per_site: must be at least 1, got {cfg.federation.ranks_per_site}")
    _require(cfg.federation.sites_per_rank >= 1,
             f"federation.sites_per_rank: must be at least 1, got {cfg.federation.sites_per_rank}")
    _require(cfg.federation.sites_per_rank == 1 or cfg.federation.ranks_per_site == 1,
             "federation.sites_per_rank: several sites per rank and several ranks per site do not combine")
    _require(bool(cfg.output), "output: must name the run file")
    _require(0 <= cfg.seed < 2**63, f"seed: must be in [0, 2^63), got {cfg.seed}")
    _check_combinations(cfg)
    m, f = cfg.model, cfg.federation
    if m.epochs is not None and f.local_epochs is not None:
        _require(m.epochs == f.rounds * f.local_epochs,
                 f"model.epochs: {m.epochs} disagrees with federation.rounds x federation.local_epochs = "
                 f"{f.rounds * f.local_epochs}")
    return cfg


def from_dict(mapping: Any, source: str = "<dict>", text: str = "") -> RunConfig:
    """Build and validate a config from a parsed mapping; errors are prefixed with `source`."""
    try:
        if not isinstance(mapping, dict):
            raise ConfigError(f"expected a mapping of options at the top level, got {type(mapping).__name__}")
        cfg = _build(RunConfig, mapping)
        cfg.source, cfg.text = source, text or yaml.safe_dump(mapping, sort_keys=False)
        return validate(cfg)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load(path: str | Path) -> RunConfig:
    """Read a YAML job file; a missing or unparsable file is a ConfigError naming it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file")
    text = p.read_text(encoding="utf-8")
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}") from None
    cfg = from_dict(mapping if mapping is not None else {}, source=str(p), text=text)
    return cfg


def to_dict(cfg: RunConfig) -> dict:
    """The config as plain data (for the run file), without the internal bookkeeping fields."""
    out = dataclasses.asdict(cfg)
    for key in _INTERNAL:
        out.pop(key)
    return out
