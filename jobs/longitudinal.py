"""The longitudinal job: every rank is a site holding its patients' visits; train a sequence generator under
each strategy, sample patients, score the release's temporal fidelity against the consortium, write run files.

The same flow as the table job (`hpcsynth.jobs.strategy_run`), on `Sequences`:
1. the site's patients are loaded (only its own), checked (no patient on two sites), split by patient;
2. the patient-row transform is fitted from merged statistics (collective);
3. every site builds the same sequence generator from the same seed and the round loop trains it;
4. each site samples as many patients as it holds; the release (one shared generator's patients together, or
   for isolated each site's own) goes to every site, which scores it against its held-out patients
   (`hpcsynth.evaluate.temporal_score`: counts merged exactly, the rest site-weighted);
5. rank 0 writes the run file: `/synthetic/<table>/context` and `/synthetic/<table>/visits`.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from hpcsynth.comm import Communicator, local_rank
from hpcsynth.config import RunConfig
from hpcsynth.data.releases import pool
from hpcsynth.data.sequence_sources import SiteSequences, check_sites_disjoint
from hpcsynth.data.sequences import Sequences
from hpcsynth.evaluate.temporal_metrics import TEMPORAL_METRICS
from hpcsynth.evaluate.temporal_score import score_sequences
from hpcsynth.federated.loop import train_rounds
from hpcsynth.federated.preemption import StopRequest
from hpcsynth.federated.privacy import make_dpsgd
from hpcsynth.federated.records import RoundRecord
from hpcsynth.federated.registry import make_strategy
from hpcsynth.io.runfile import write_comparison
from hpcsynth.io.sequence_runfile import SequenceRun, write_sequence_run
from hpcsynth.jobs.strategy_run import StrategyResult, set_threads, strategy_output
from hpcsynth.models import make_model


def score_release(releases: list[Sequences], per_site: bool, data: SiteSequences, event: str | None,
                  comm: Communicator, seed: int) -> tuple[dict[str, float], dict[str, float], list[dict]]:
    """(scores, worst, each site's scores) of the release against the consortium's held-out patients
    (collective). With `per_site` (isolated) each site's own patients are judged alone, the scores are the
    sites' mean and `worst` the worst site's value of each (by its direction); else one release, no worst."""

    def judged(release: Sequences) -> dict[str, float]:
        with threadpool_limits(limits=1, user_api="openmp"):  # small fits: a thread per core only waits
            return score_sequences(data.holdout, release, comm, train=data.train, event=event,
                                   ends=data.declared.ends, seed=seed)

    if not per_site:
        return judged(pool(releases)), {}, []
    each = [judged(r) for r in releases]
    keys = list(each[0])
    table = pd.DataFrame(each, columns=keys)
    worst = {k: float(table[k].max() if TEMPORAL_METRICS[k].direction == "lower" else table[k].min())
             for k in keys if k in TEMPORAL_METRICS}
    return {k: float(table[k].mean()) for k in keys}, worst, each


def _private(cfg: RunConfig, model, strategy, n_patients: int, comm: Communicator) -> None:
    """DP-SGD for this site, calibrated so that the planned steps spend `privacy.epsilon` (per patient: a patient
    is one row of the sequence transform)."""
    strategy.setup(n_patients, cfg.model.batch_size, comm)
    steps = cfg.federation.rounds * strategy.steps_per_round(cfg.local_epochs)
    p = cfg.privacy
    model.make_private(make_dpsgd(p.epsilon, p.delta, p.max_grad_norm, p.accountant,
                                  strategy.batch_rows / n_patients, steps, (cfg.seed, comm.rank), []))


def run_sequence_strategy(cfg: RunConfig, name: str, data: SiteSequences, transformer, event: str | None,
                          comm: Communicator, n_sites: int, progress, stop: StopRequest | None) -> StrategyResult:
    """Train, sample, score and write one strategy's longitudinal run (collective)."""
    start = time.perf_counter()
    path = strategy_output(cfg, name)
    strategy = make_strategy(name, vars(cfg.federation))

    def fresh():  # every site's generator: the same family and seed
        return make_model(dataclasses.asdict(cfg.model), cfg.seed, cfg.federation.rounds * cfg.local_epochs)

    model = fresh().setup(transformer, stream=comm.rank, local_rank=local_rank())
    rows = model.to_device(transformer.encode(data.train))
    if cfg.privacy is not None:
        _private(cfg, model, strategy, data.train.n_patients, comm)
    strategy.attach(model, rows, comm)
    records: list[RoundRecord] = []

    def checkpointing(_model, _shared: bool):  # the round records (no resume for visit sequences yet)
        def tick(record: RoundRecord) -> None:
            records.append(record)
            progress(name, record)

        return tick

    f = cfg.federation
    if strategy.phased:  # sd_sharing: site models, then a shared one on the pooled synthetic patients
        model = strategy.train(model, rows, comm, f.rounds, cfg.local_epochs, cfg.model.batch_size, checkpointing,
                               fresh, stop)
    else:
        train_rounds(model, rows, strategy, comm, f.rounds, cfg.local_epochs, cfg.model.batch_size,
                     on_round=checkpointing(model, strategy.shares_model), stop=stop)
    strategy.finish(model, rows, comm)
    releases = comm.allgather(model.sample(cfg.sample.n_rows or data.site_patients))
    scores, worst, sites = score_release(releases, strategy.releases_per_site, data, event, comm, cfg.seed)
    spent = comm.gather(model.privacy_.accountant.epsilon() if model.privacy_ is not None else None)
    scores["wall_s"] = time.perf_counter() - start
    if comm.is_root:
        write_sequence_run(path, SequenceRun(
            cfg.text, cfg.source, name, n_sites, transformer.state(), RoundRecord.table(records),
            {"pooled": pool(releases), **{f"site_{k}": r for k, r in enumerate(releases)}}, scores, worst, sites,
            epsilon_spent=[e for e in spent if e is not None] if cfg.privacy is not None else []))
    comm.barrier()
    return StrategyResult(name, Path(path), comm.bcast(scores))


def run_longitudinal(cfg: RunConfig, data: SiteSequences, comm: Communicator, n_sites: int, progress=None,
                     stop: StopRequest | None = None) -> list[StrategyResult]:
    """Every strategy of the job in turn on this site's patients, then the comparison file when there are
    several (collective)."""
    set_threads()
    check_sites_disjoint(data, comm, cfg.seed)
    model = make_model({**dataclasses.asdict(cfg.model), "ends": data.declared.ends}, cfg.seed, 1)
    transformer = model.make_transformer().fit(data.train, comm)
    event = data.declared.visit_event
    progress = progress or (lambda name, record: None)
    results = [run_sequence_strategy(cfg, name, data, transformer, event, comm, n_sites, progress, stop)
               for name in cfg.strategies]
    if len(results) > 1 and comm.is_root:
        rows = [{"strategy": r.strategy, **r.scores} for r in results]
        write_comparison(cfg.output, cfg.text, cfg.source, rows, {r.strategy: r.path for r in results})
    return results
