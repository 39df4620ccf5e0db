"""The training job: every rank is a site; train one or more strategies, sample, evaluate, write run files.

`main(config, comm)` is what `hpcsynth run` (under `mpiexec` or `srun`) and the SLURM glue call. Per strategy:
1. the site's rows are loaded (only its own), checked, split into training and held-out rows;
2. the shared transform is fitted from merged statistics (collective);
3. every site builds the same generator from the same seed and the round loop trains it;
4. each site samples; the synthetic tables are exchanged (they are the product; real rows never are);
5. the release is scored against the consortium's pooled held-out rows (`hpcsynth.evaluate.judge`), with the
   per-round scores of the metric registry (also every `evaluation.every` rounds); rank 0 writes the run file.
When several strategies are listed, each gets `<stem>-<strategy>.h5` and `output` becomes a comparison file
that links them; rank 0 prints the comparison table.
"""
from __future__ import annotations

import os

from hpcsynth.comm import Communicator
from hpcsynth.config import ConfigError, RunConfig
from hpcsynth.data.sequence_sources import count_sequence_sites, is_longitudinal, load_site_sequences
from hpcsynth.data.sources import count_sites, load_site
from hpcsynth.federated.preemption import StopRequest
from hpcsynth.federated.registry import STRATEGIES
from hpcsynth.jobs.sites import agree


def plan_sites(cfg: RunConfig, comm: Communicator) -> tuple[int, int | None]:
    """(number of sites, this rank's site); one process with several sites pools them (centralized only).
    With `federation.ranks_per_site: R`, ranks R*k .. R*k + R - 1 are site k."""
    per_site = cfg.federation.ranks_per_site
    if comm.size > 1:
        if comm.size % per_site:
            raise ConfigError(f"{cfg.source}: federation.ranks_per_site {per_site} does not divide the job's "
                              f"{comm.size} ranks")
        n_sites = comm.size // per_site
        declared = cfg.data.n_sites if cfg.data.sites is None else len(cfg.data.sites)
        if declared is not None and declared != n_sites:
            raise ConfigError(f"{cfg.source}: data defines {declared} sites but the job runs {comm.size} ranks "
                              f"({per_site} per site)")
        return n_sites, comm.rank // per_site
    n_sites = count_sequence_sites(cfg.data) if is_longitudinal(cfg.data) else count_sites(cfg.data)
    federated = [s for s in cfg.strategies if not STRATEGIES[s].data_parallel]  # only those can pool the sites
    if n_sites > 1 and federated:
        raise ConfigError(f"{cfg.source}: federation.strategy {federated[0]} with {n_sites} sites needs one rank "
                          f"per site: run under `mpiexec -n {n_sites}`")
    return n_sites, None


def use_job_compile_cache(cfg: RunConfig) -> None:
    """Point the compile cache at `model.compile_cache` when the job names one: the variable
    `hpcsynth.models.compiled.use_compile_cache` reads where a step compiles (set here without importing torch,
    which the job loads only once its data is good)."""
    if cfg.model.compile_cache is not None:
        os.environ["HPCSYNTH_COMPILE_CACHE"] = os.path.expanduser(cfg.model.compile_cache)


def main(cfg: RunConfig, comm: Communicator, progress=None, resume: bool = False,
         stop: StopRequest | None = None) -> list:
    """Run the job described by `cfg` on this rank (collective: every rank calls it with the same config).

    With `resume`, finished strategies are skipped and an interrupted one continues from its checkpoint.
    Returns the `StrategyResult` of every strategy."""
    n_sites, site_index = plan_sites(cfg, comm)
    use_job_compile_cache(cfg)
    if is_longitudinal(cfg.data):
        data = agree(lambda: load_site_sequences(cfg.data, site_index, n_sites, cfg.seed), comm)
        from hpcsynth.jobs.longitudinal import run_longitudinal

        return run_longitudinal(cfg, data, comm, n_sites, progress, stop)
    whole = agree(lambda: load_site(cfg.data, site_index, n_sites, cfg.seed), comm)
    site = whole
    if comm.size > 1 and cfg.federation.ranks_per_site > 1:
        site = whole.shard(comm.rank % cfg.federation.ranks_per_site, cfg.federation.ranks_per_site)
    from hpcsynth.jobs.strategy_run import run_all  # the training stack loads once the data is good

    return run_all(cfg, site, comm, n_sites, progress, resume, stop, whole)
