"""One strategy's run on this rank: train, checkpoint every round, sample, score, write the run file.

Split from `train.py` so that the evaluation and its Numba kernels load only once the data has been read and
checked: a bad data file fails on every rank before they are imported.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hpcsynth.comm import Communicator, SoloComm, local_rank, local_size
from hpcsynth.config import PrivacyConfig, RunConfig
from hpcsynth.data.cohorts import COHORTS
from hpcsynth.data.private_stats import LEVELS_DELTA_SHARE, StatisticsBudget
from hpcsynth.data.shift import ShiftReport
from hpcsynth.data.sources import SiteData
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.judge import Judge
from hpcsynth.evaluate.metrics import per_round
from hpcsynth.evaluate.suite import EvalSpec, Evaluation
from hpcsynth.federated.loop import train_rounds
from hpcsynth.federated.preemption import StopRequest
from hpcsynth.federated.privacy import make_dpsgd
from hpcsynth.federated.records import RoundRecord
from hpcsynth.federated.registry import make_strategy
from hpcsynth.federated.strategy import Strategy
from hpcsynth.federated.wrappers import within_site
from hpcsynth.io.checkpoint import completed_scores, load_checkpoint, pack_state, unpack_state
from hpcsynth.io.evaluation import evaluation_groups
from hpcsynth.io.runfile import RunContent, partial_path, write_comparison, write_run
from hpcsynth.jobs.sites import shift_report
from hpcsynth.messages import warn
from hpcsynth.models import MODELS, Generator, make_model


@dataclass
class StrategyResult:
    """What a strategy's run leaves: its run file, its scores (the same on every rank) and, on rank 0, the
    evaluation they come from."""

    strategy: str
    path: Path
    scores: dict[str, float]
    evaluation: Evaluation | None = None


@dataclass
class ReleaseScorer:
    """Draws a strategy's release and scores it against the consortium's held-out rows (`Judge`), with the
    per-round scores of the metric registry: after every `every`-th round of training and after the last.

    Parameters
    ----------
    judge : Judge or None
        This site's share of the judge; None on the ranks of a site other than its first (they train, the
        first rank samples and evaluates for the site).
    comm : Communicator
        Every rank of the job.
    ranks_per_site : int
        Consecutive ranks that make one site.
    n_rows : int
        The rows this rank draws (0 on a site's other ranks).
    every : int or None
        Evaluate after every this many rounds too (None: after the last only).
    """

    judge: Judge | None
    comm: Communicator
    ranks_per_site: int
    n_rows: int
    every: int | None = None
    latest: tuple[int, Evaluation | None] | None = None  # the last scored round and its evaluation

    def after_round(self, record: RoundRecord, model: Generator, strategy: Strategy, data: torch.Tensor) -> None:
        """Score the release after `record`'s round when it is due, into the record (collective)."""
        if self.every is None or (record.round + 1) % self.every:
            return
        t0 = time.perf_counter()
        evaluation = self.score(self.draw(model, strategy, data), strategy.releases_per_site)
        record.scores = self.round_columns(self.scores(evaluation))
        record.eval_s = time.perf_counter() - t0
        self.latest = (record.round, evaluation)

    def final(self, model: Generator, strategy: Strategy, data: torch.Tensor,
              records: list[RoundRecord]) -> tuple[list[pd.DataFrame], Evaluation | None, dict[str, float]]:
        """The release after training: its tables, evaluation and scores (collective). When the last round was
        scored, the model has not changed since and its evaluation is the final one; else the release is scored
        now and the last round gets the scores."""
        t0 = time.perf_counter()
        tables = self.draw(model, strategy, data)
        if records and self.latest is not None and self.latest[0] == records[-1].round:
            return tables, self.latest[1], self.scores(self.latest[1])
        evaluation = self.score(tables, strategy.releases_per_site)
        scores = self.scores(evaluation)
        if records:
            records[-1].scores, records[-1].eval_s = self.round_columns(scores), time.perf_counter() - t0
        return tables, evaluation, scores

    def draw(self, model: Generator, strategy: Strategy, data: torch.Tensor) -> list[pd.DataFrame]:
        """Every site's synthetic table (collective): the sampling prior fitted as the strategy declares, then
        one table per site, drawn by its first rank."""
        if model.trains_by == "gradients":
            strategy.finish(model, data, self.comm)
        return self.comm.allgather(model.sample(self.n_rows))[::self.ranks_per_site]

    def score(self, tables: list[pd.DataFrame], per_site: bool) -> Evaluation | None:
        """The release's per-round scores (collective; None on the ranks that do not evaluate)."""
        return self.judge.release(tables, per_site, per_round()) if self.judge is not None else None

    def scores(self, evaluation: Evaluation | None) -> dict[str, float]:
        """The scores of rank 0's evaluation, on every rank."""
        return self.comm.bcast(evaluation.scores if evaluation is not None else None)

    @staticmethod
    def round_columns(scores: dict[str, float]) -> dict[str, float]:
        """What `/rounds` keeps of an evaluation: the per-round scores."""
        return {k: scores[k] for k in per_round() if k in scores}


def strategy_output(cfg: RunConfig, strategy: str) -> Path:
    out = Path(cfg.output)
    if len(cfg.strategies) == 1:
        return out
    return out.with_name(f"{out.stem}-{strategy}{out.suffix}")


def set_threads() -> None:
    """Share the node's cores between the ranks on it (torch and the Numba kernels alike): idle worker threads
    of one library spin for a while, and on 3 ranks over 2 cores they slowed the next strategy tenfold."""
    import os

    import numba

    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():  # SLURM gave this task its own cores
        threads = int(os.environ["SLURM_CPUS_PER_TASK"])
    else:  # the cores this process may use (its affinity mask), shared by the ranks on the node
        threads = max(1, len(os.sched_getaffinity(0)) // max(local_size(), 1))
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def _checkpoint_writer(cfg: RunConfig, strategy: Strategy, shares_model: bool, model: Generator,
                       transformer: TableTransformer, comm: Communicator, n_sites: int, records: list):
    """After every round: gather the parameters (one row per site unless the model is shared; the ranks of a
    site hold the same ones) and each rank's local state (the model's and the strategy's) on rank 0, which
    writes `<output>.partial.h5` atomically."""
    strategy_name = strategy.name
    path = partial_path(strategy_output(cfg, strategy_name))

    def on_round(record: RoundRecord) -> None:
        records.append(record)
        params = model.shared_parameters().detach().cpu().numpy().astype(np.float32)
        gathered = comm.gather((params, pack_state(model.local_state(), strategy.state())))
        if gathered is None:
            return
        rows = [gathered[0][0]] if shares_model else [g[0] for g in gathered[::_ranks_per_site(cfg, comm)]]
        write_run(path, RunContent(cfg.text, cfg.source, strategy_name, n_sites, transformer, status="partial",
                                   rounds=RoundRecord.table(records), checkpoint_params=_stack_rows(rows),
                                   checkpoint_round=record.round, local_states=[g[1] for g in gathered]))

    return on_round


def _ranks_per_site(cfg: RunConfig, comm: Communicator) -> int:
    """How many consecutive ranks make one site (one in a single process, which holds every site's rows)."""
    return cfg.federation.ranks_per_site if comm.size > 1 else 1


def _stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    """One checkpoint row per site; rows of different lengths (isolated Bayesian networks learn different
    structures, so different numbers of counts) are padded with NaN."""
    width = max(r.size for r in rows)
    return np.stack([np.pad(r.astype(np.float32), (0, width - r.size), constant_values=np.nan) for r in rows])


def _resume(cfg: RunConfig, path: Path, model: Generator, strategy: Strategy, comm: Communicator, records: list) -> int:
    """Restore this rank's model, its state and the strategy's from the partial run file; return the first round
    still to run."""
    ckpt = load_checkpoint(partial_path(path), cfg.text, comm.rank, comm.rank // _ranks_per_site(cfg, comm))
    if ckpt is None:
        return 0
    with torch.no_grad():
        model.shared_parameters().copy_(torch.from_numpy(ckpt.params))
    model_state, strategy_state = unpack_state(ckpt.local_state)
    model.load_local_state(model_state)
    strategy.load_state(strategy_state)
    records.extend(ckpt.records)
    return ckpt.round + 1


def _accountant_delta(p: PrivacyConfig) -> float:
    """The delta the accountant works to: all of it, less the share set aside for selecting category levels
    when the transform statistics are private (`hpcsynth.data.private_stats`)."""
    return p.delta * (1.0 - LEVELS_DELTA_SHARE) if p.statistics_share > 0 else p.delta


def _statistics_spent(transformer: TableTransformer) -> list[tuple[float, float, int]]:
    """The transform statistics' releases as an accountant history entry (Gaussian, sample rate 1)."""
    done = transformer.privacy_
    return [(done["noise_multiplier"], 1.0, done["releases"])] if done else []


def _make_private(cfg: RunConfig, model: Generator, strategy: Strategy, n_rows: int, transformer: TableTransformer,
                  comm: Communicator) -> None:
    """DP-SGD for this site, its noise calibrated so that the transform statistics, the family's own releases
    outside DP-SGD (`private_releases`) and the planned steps together spend `privacy.epsilon` exactly; its noise
    drawn from the counter-based stream of (seed, rank, step), whose position a checkpoint keeps as one number."""
    strategy.setup(n_rows, cfg.model.batch_size, comm)
    steps = cfg.federation.rounds * strategy.steps_per_round(cfg.local_epochs) * model.private_steps_per_step
    p = cfg.privacy
    model.make_private(make_dpsgd(p.epsilon, _accountant_delta(p), p.max_grad_norm, p.accountant,
                                  strategy.batch_rows / n_rows, steps, (cfg.seed, comm.rank),
                                  _statistics_spent(transformer) + model.private_releases()))


def _privacy_record(cfg: RunConfig, model: Generator, transformer: TableTransformer, comm: Communicator) -> dict:
    """Per site: noise multiplier, sample rate and epsilon spent, gathered for the run file's /privacy."""
    mechanism = model.privacy_
    mine = (mechanism.accountant.sigma, mechanism.sample_rate, mechanism.accountant.epsilon())
    sites = comm.gather(mine)
    if sites is None:
        return {}
    p, statistics = cfg.privacy, transformer.privacy_ or {}
    return {"epsilon_budget": p.epsilon, "delta": p.delta, "accountant_delta": _accountant_delta(p),
            "max_grad_norm": p.max_grad_norm, "accountant": p.accountant,
            "statistics_share": p.statistics_share,
            "statistics_noise_multiplier": statistics.get("noise_multiplier", 0.0),
            "statistics_releases": statistics.get("releases", 0),
            # the family's own releases outside DP-SGD (VAE-BGM's DP-EM prior): noise multipliers and counts
            "model_release_noise_multiplier": [r[0] for r in model.private_releases()],
            "model_releases": [r[2] for r in model.private_releases()],
            "noise_multiplier": [s[0] for s in sites],
            "sample_rate": [s[1] for s in sites], "epsilon_spent": [s[2] for s in sites]}


def _statistics_budget(cfg: RunConfig) -> StatisticsBudget | None:
    """What the transform statistics may spend, or None when they are exact (no budget, or a share of 0)."""
    p = cfg.privacy
    if p is None or p.statistics_share == 0:
        return None
    return StatisticsBudget(p.epsilon * p.statistics_share, _accountant_delta(p), p.delta * LEVELS_DELTA_SHARE,
                            p.accountant, cfg.seed)


def fit_transformer(site: SiteData, numeric: str, comm: Communicator,
                    privacy: StatisticsBudget | None = None) -> TableTransformer:
    """The shared transform, fitted from merged statistics of every site's training rows (collective); with
    `privacy`, every site noises its own statistics."""
    return TableTransformer.declared(site.declared, numeric).fit(site.train, comm, privacy)


def run_strategy(cfg: RunConfig, name: str, site: SiteData, transformer: TableTransformer, judge: Judge | None,
                 comm: Communicator, n_sites: int, progress, resume: bool = False,
                 stop: StopRequest | None = None, shift: ShiftReport | None = None) -> StrategyResult:
    """Train, sample, score and write one strategy's run. `transformer` is the one the generator trains on;
    `judge` scores the release against the consortium's held-out rows, as `hpcsynth evaluate` does."""
    start = time.perf_counter()
    path = strategy_output(cfg, name)
    if resume and (done := completed_scores(path, cfg.text)) is not None:
        return StrategyResult(name, path, done)
    per_site = _ranks_per_site(cfg, comm)
    site_comm = comm.split(comm.rank // per_site) if per_site > 1 else SoloComm()  # the ranks of this rank's site
    strategy = within_site(make_strategy(name, vars(cfg.federation)), site_comm)

    def fresh() -> Generator:  # every site's generator: the same family and seed
        return make_model(dataclasses.asdict(cfg.model), cfg.seed, cfg.federation.rounds * cfg.local_epochs)

    model = fresh()
    model.setup(transformer, stream=comm.rank, local_rank=local_rank())
    data = model.to_device(transformer.encode(site.train))
    if cfg.privacy is not None:
        _make_private(cfg, model, strategy, len(site.train), transformer, comm)
    strategy.attach(model, data, comm)
    records: list[RoundRecord] = []
    by_rounds = model.trains_by == "gradients" and not strategy.phased  # only the round loop checkpoints to resume
    start_round = _resume(cfg, path, model, strategy, comm, records) if resume and by_rounds else 0
    leader = comm.rank % per_site == 0  # with several ranks per site, the first samples for the site
    scorer = ReleaseScorer(judge, comm, per_site, (cfg.sample.n_rows or site.site_rows) if leader else 0,
                           cfg.evaluation.every)

    def checkpointing(m: Generator, shared: bool):
        on_round = _checkpoint_writer(cfg, strategy, shared, m, transformer, comm, n_sites, records)
        releasing = shared or not strategy.phased  # a phased strategy releases from its shared phase only

        def tick(record: RoundRecord) -> None:
            if releasing:
                scorer.after_round(record, m, strategy, data)
            on_round(record)
            progress(name, record)

        return tick

    if model.trains_by == "counts":  # one exact exchange of counts; refitting takes seconds, so a resume refits
        strategy.fit_counts(model, data, comm, on_round=checkpointing(model, strategy.shares_model))
    elif strategy.phased:  # e.g. sd_sharing: local models, then a shared one on synthetic rows
        model = strategy.train(model, data, comm, cfg.federation.rounds, cfg.local_epochs, cfg.model.batch_size,
                               checkpointing, fresh, stop)
    else:
        train_rounds(model, data, strategy, comm, cfg.federation.rounds, cfg.local_epochs, cfg.model.batch_size,
                     start_round=start_round, on_round=checkpointing(model, strategy.shares_model), stop=stop)
    privacy_spent = _privacy_record(cfg, model, transformer, comm) if cfg.privacy is not None else {}
    tables, evaluation, scores = scorer.final(model, strategy, data, records)
    scores = {**scores, "wall_s": time.perf_counter() - start}
    if comm.is_root:
        last = partial_path(path)
        evaluation.scores["wall_s"] = scores["wall_s"]
        content = RunContent(cfg.text, cfg.source, name, n_sites, transformer, rounds=RoundRecord.table(records),
                             synthetic={"pooled": pd.concat(tables, ignore_index=True),
                                        **{f"site_{k}": t for k, t in enumerate(tables)}},
                             evaluation=evaluation.scores, evaluation_groups=evaluation_groups(evaluation),
                             evaluation_curves=evaluation.curves(), partition=site.partition, shift=shift,
                             privacy=privacy_spent)
        _copy_checkpoint(last, content)
        write_run(path, content)  # one atomic write: the file is whole, its evaluation included, or absent
        last.unlink(missing_ok=True)
    comm.barrier()
    return StrategyResult(name, path, comm.bcast(scores), evaluation if comm.is_root else None)


def _copy_checkpoint(partial: Path, content: RunContent) -> None:
    """The final file keeps the last checkpoint, so a finished run can be continued or inspected."""
    import h5py

    with h5py.File(partial, "r") as f:
        ckpt = f["checkpoint"]
        content.checkpoint_params = ckpt["params"][()]
        content.checkpoint_round = int(ckpt.attrs["round"])
        content.local_states = [ckpt[k][()].tobytes() for k in sorted(ckpt) if k.startswith("site_")]


def make_judge(cfg: RunConfig, site: SiteData, exact: TableTransformer, comm: Communicator) -> Judge | None:
    """This site's share of the judge (collective): its rows (all of them on the site's first rank when sites
    have several ranks; the others get None) and `exact`, the scoring transform fitted without noise, as
    `hpcsynth evaluate` rebuilds them."""
    per_site = _ranks_per_site(cfg, comm)
    leaders = comm.split(0 if comm.rank % per_site == 0 else 1) if per_site > 1 else comm
    if comm.rank % per_site:
        return None
    spec = EvalSpec.default(exact, COHORTS.get(cfg.data.builtin), cfg.seed)
    if site.declared.time_unit is not None:  # data.time_unit (or the named cohort's): td-AUROC at 1, 3, 5 years
        spec = dataclasses.replace(spec, time_unit=site.declared.time_unit)
    return Judge(site.train, site.holdout, exact, leaders, spec, max(comm.size // per_site, 1))


def run_all(cfg: RunConfig, site: SiteData, comm: Communicator, n_sites: int, progress=None, resume: bool = False,
            stop: StopRequest | None = None, whole_site: SiteData | None = None) -> list[StrategyResult]:
    """Every strategy of the job in turn, then the comparison file when there are several. `whole_site`: the
    site's rows before they were shared out over its ranks (default `site`), for the judge."""
    set_threads()
    if cfg.privacy is not None and cfg.privacy.statistics_share == 0 and comm.is_root:
        warn("privacy: the transform statistics (ranges, levels, histograms) are exact; epsilon covers training "
             "only (set privacy.statistics_share to noise them too)")
    scoring = fit_transformer(site, "quantile", comm, _statistics_budget(cfg))
    shift = shift_report(site.train, scoring, site.declared.target or site.declared.event, comm)
    exact = scoring if _statistics_budget(cfg) is None else fit_transformer(site, "quantile", comm)
    judge = make_judge(cfg, whole_site or site, exact, comm)
    numeric = cfg.model.numeric or MODELS[cfg.model.name].default_numeric
    training = scoring if numeric == "quantile" else fit_transformer(site, numeric, comm)
    progress = progress or (lambda name, record: None)
    results = [run_strategy(cfg, name, site, training, judge, comm, n_sites, progress, resume, stop, shift)
               for name in cfg.strategies]
    if len(results) > 1 and comm.is_root:
        rows = [{"strategy": r.strategy, **r.scores} for r in results]
        write_comparison(cfg.output, cfg.text, cfg.source, rows, {r.strategy: r.path for r in results})
    return results
