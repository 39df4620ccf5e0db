"""The training job: every rank is a site; train one or more strategies, sample, evaluate, write run files.

`main(config, comm)` is what `hpcsynth run` (under `mpiexec` or `srun`) and the SLURM glue call. Per strategy:
1. the site's rows are loaded (only its own), split into training and held-out rows;
2. the shared transform is fitted from merged statistics (collective);
3. every site builds the same generator from the same seed and the round loop trains it;
4. each site samples; the synthetic tables are exchanged (they are the product; real rows never are);
5. fidelity (exact pooled KS/TV from merged counts) and DCR are computed; rank 0 writes the run file.
When several strategies are listed, each gets `<stem>-<strategy>.h5` and `output` becomes a comparison file
that links them; rank 0 prints the comparison table.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hpcsynth.config import ConfigError, RunConfig
from hpcsynth.data.sources import SiteData, count_sites, load_site
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.fidelity import fidelity
from hpcsynth.evaluate.privacy import dcr
from hpcsynth.federated.comm import Communicator, local_rank, local_size
from hpcsynth.federated.loop import RoundRecord, train_rounds
from hpcsynth.federated.preemption import StopRequest
from hpcsynth.io.checkpoint import completed_scores, load_checkpoint
from hpcsynth.federated.strategies import make_strategy
from hpcsynth.io.runfile import RunContent, partial_path, write_comparison, write_run
from hpcsynth.models import Generator, make_model

DIRECTIONS = {"fidelity": "higher", "dcr_synthetic_p5": "higher", "dcr_holdout_p5": "higher",
              "dcr_ratio": "higher", "exact_match_rate": "lower", "wall_s": "lower"}


@dataclass
class StrategyResult:
    strategy: str
    path: Path
    scores: dict[str, float]


def plan_sites(cfg: RunConfig, comm: Communicator) -> tuple[int, int | None]:
    """(number of sites, this rank's site); one process with several sites pools them (centralized only)."""
    if comm.size > 1:
        declared = cfg.data.n_sites if cfg.data.sites is None else len(cfg.data.sites)
        if declared is not None and declared != comm.size:
            raise ConfigError(f"{cfg.source}: data defines {declared} sites but the job runs {comm.size} ranks "
                              f"(one rank per site)")
        return comm.size, comm.rank
    n_sites = count_sites(cfg.data)
    federated = [s for s in cfg.strategies if s != "centralized"]
    if n_sites > 1 and federated:
        raise ConfigError(f"{cfg.source}: federation.strategy {federated[0]} with {n_sites} sites needs one rank "
                          f"per site: run under `mpiexec -n {n_sites}`")
    return n_sites, None


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

    threads = max(1, (os.cpu_count() or 1) // max(local_size(), 1))
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def _checkpoint_writer(cfg: RunConfig, strategy_name: str, shares_model: bool, model: Generator,
                       transformer: TableTransformer, comm: Communicator, n_sites: int, records: list):
    """After every round: gather the parameters (one row per site unless the model is shared) and each site's
    local state on rank 0, which writes `<output>.partial.h5` atomically."""
    path = partial_path(strategy_output(cfg, strategy_name))

    def on_round(record: RoundRecord) -> None:
        records.append(record)
        params = model.shared_parameters().detach().cpu().numpy().astype(np.float32)
        gathered = comm.gather((params, model.local_state()))
        if gathered is None:
            return
        rows = [gathered[0][0]] if shares_model else [g[0] for g in gathered]
        write_run(path, RunContent(cfg.text, cfg.source, strategy_name, n_sites, transformer, status="partial",
                                   rounds=RoundRecord.table(records), checkpoint_params=np.stack(rows),
                                   checkpoint_round=record.round, local_states=[g[1] for g in gathered]))

    return on_round


def _resume(cfg: RunConfig, path: Path, model: Generator, comm: Communicator, records: list) -> int:
    """Restore this rank's model and state from the partial run file; return the first round still to run."""
    ckpt = load_checkpoint(partial_path(path), cfg.text, comm.rank)
    if ckpt is None:
        return 0
    with torch.no_grad():
        model.shared_parameters().copy_(torch.from_numpy(ckpt.params))
    model.load_local_state(ckpt.local_state)
    records.extend(ckpt.records)
    return ckpt.round + 1


def run_strategy(cfg: RunConfig, name: str, site: SiteData, transformer: TableTransformer, comm: Communicator,
                 n_sites: int, progress, resume: bool = False, stop: StopRequest | None = None) -> StrategyResult:
    start = time.perf_counter()
    path = strategy_output(cfg, name)
    if resume and (done := completed_scores(path, cfg.text)) is not None:
        return StrategyResult(name, path, done)
    strategy = make_strategy(name)
    model = make_model(cfg.model, cfg.seed, cfg.federation.rounds * cfg.local_epochs)
    model.setup(transformer, stream=comm.rank, local_rank=local_rank())
    data = model.to_device(transformer.encode(site.train))
    records: list[RoundRecord] = []
    start_round = _resume(cfg, path, model, comm, records) if resume else 0
    on_round = _checkpoint_writer(cfg, name, strategy.shares_model, model, transformer, comm, n_sites, records)

    def tick(record: RoundRecord) -> None:
        on_round(record)
        progress(name, record)

    train_rounds(model, data, strategy, comm, cfg.federation.rounds, cfg.local_epochs, cfg.model.batch_size,
                 start_round=start_round, on_round=tick, stop=stop)
    n_rows = cfg.sample.n_rows or len(site.train) + len(site.holdout)
    synthetic = model.sample(n_rows)
    tables = comm.allgather(synthetic)
    scores = {"fidelity": float(np.mean([fidelity(t, site.holdout, transformer, comm) for t in tables]))}
    privacy = dcr(pd.concat(tables, ignore_index=True), site.train, site.holdout, transformer, comm)
    scores["wall_s"] = time.perf_counter() - start
    if comm.is_root:
        scores.update(privacy)
        last = partial_path(path)
        content = RunContent(cfg.text, cfg.source, name, n_sites, transformer, rounds=RoundRecord.table(records),
                             synthetic={"pooled": pd.concat(tables, ignore_index=True),
                                        **{f"site_{k}": t for k, t in enumerate(tables)}},
                             evaluation=scores, directions={k: DIRECTIONS[k] for k in scores})
        _copy_checkpoint(last, content)
        write_run(path, content)
        last.unlink(missing_ok=True)
    comm.barrier()
    return StrategyResult(name, path, comm.bcast(scores))


def _copy_checkpoint(partial: Path, content: RunContent) -> None:
    """The final file keeps the last checkpoint, so a finished run can be continued or inspected."""
    import h5py

    with h5py.File(partial, "r") as f:
        ckpt = f["checkpoint"]
        content.checkpoint_params = ckpt["params"][()]
        content.checkpoint_round = int(ckpt.attrs["round"])
        content.local_states = [ckpt[k][()].tobytes() for k in sorted(ckpt) if k.startswith("site_")]


def main(cfg: RunConfig, comm: Communicator, progress=None, resume: bool = False,
         stop: StopRequest | None = None) -> list[StrategyResult]:
    """Run the job described by `cfg` on this rank (collective: every rank calls it with the same config).

    With `resume`, finished strategies are skipped and an interrupted one continues from its checkpoint."""
    set_threads()
    n_sites, site_index = plan_sites(cfg, comm)
    site = load_site(cfg.data, site_index, n_sites, cfg.seed)
    transformer = TableTransformer(site.categorical, site.time, site.event).fit(site.train, comm)
    progress = progress or (lambda name, record: None)
    results = [run_strategy(cfg, name, site, transformer, comm, n_sites, progress, resume, stop)
               for name in cfg.strategies]
    if len(results) > 1 and comm.is_root:
        rows = [{"strategy": r.strategy, **r.scores} for r in results]
        write_comparison(cfg.output, cfg.text, cfg.source, rows, {r.strategy: r.path for r in results})
    return results
