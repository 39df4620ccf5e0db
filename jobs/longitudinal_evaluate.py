"""`hpcsynth evaluate RUN.h5` for a longitudinal run (or a comparison of them): re-score every strategy's release of
visit sequences against the consortium's held-out patients, rewrite each run file's `/evaluation` and write the
HTML report with the temporal figures.

The real patients are regenerated from the job's configuration stored in `/config`: the same sources, seed and
sites give the same split by patient (`load_site_sequences`), and a release is judged exactly as the job judged
it (`hpcsynth.jobs.longitudinal.score_release`), so the numbers equal those `hpcsynth run` printed. Under
`mpiexec -n K` (K the run's sites) rank k loads only site k's patients; in one process the K sites run as K
threads taking turns (`hpcsynth.comm.SitesInOneProcess`), each holding only its own patients.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import yaml
from threadpoolctl import threadpool_limits

from hpcsynth.comm import Communicator, SitesInOneProcess
from hpcsynth.config import ConfigError, RunConfig, from_dict
from hpcsynth.data.sequence_sources import SiteSequences, is_longitudinal, load_site_sequences
from hpcsynth.data.sequences import Sequences
from hpcsynth.evaluate.sequence_report import SequenceSection, write_sequence_report
from hpcsynth.evaluate.temporal import labs_of, time_profiles
from hpcsynth.evaluate.temporal_figures import temporal_figures
from hpcsynth.io.sequence_runfile import read_sequences, rewrite_sequence_evaluation
from hpcsynth.jobs.evaluate import releases_per_site, run_files, site_tables
from hpcsynth.jobs.longitudinal import score_release
from hpcsynth.jobs.sites import agree
from hpcsynth.jobs.strategy_run import set_threads

SHOWN_PATIENTS = 6  # real patients the spaghetti plot draws: a handful of site 0's held-out ones


def stored_config(path: Path) -> RunConfig:
    """The job's configuration as the run file stores it in `/config`."""
    with h5py.File(path, "r") as f:
        text = f["config"][()]
    text = text.decode() if isinstance(text, bytes) else str(text)
    return from_dict(yaml.safe_load(text), source=f"{path}:/config", text=text)


def real_patients(path: Path, comm: Communicator) -> tuple[RunConfig, SiteSequences]:
    """The run's configuration and this site's patients (rank or thread k: site k's, split exactly as the job
    split them; a run of one process: every site's, pooled as the job pooled them). Collective."""
    cfg = stored_config(path)
    if not is_longitudinal(cfg.data):
        raise ConfigError(f"{path}: its /config describes no visit data, so its real patients cannot be rebuilt")
    with h5py.File(path, "r") as f:
        n_sites = int(f.attrs["n_sites"])
    ranks = len(site_tables(path))
    if comm.size != ranks and not (comm.size == 1 and ranks == 1):
        raise ConfigError(f"{path}: the run had {ranks} sites; evaluate it under `mpiexec -n {ranks}` or in one "
                          "process")
    data = agree(lambda: load_site_sequences(cfg.data, comm.rank if ranks > 1 else None, n_sites, cfg.seed), comm)
    return cfg, data


def shown_patients(holdout: Sequences, seed: int, n: int = SHOWN_PATIENTS) -> Sequences:
    """`n` held-out patients drawn at random: the only real trajectories the report shows (one site's)."""
    keys = holdout.context[holdout.key].to_numpy()
    chosen = np.random.default_rng(seed).choice(keys, min(n, keys.size), replace=False) if keys.size else keys
    return holdout.select(chosen)


def real_shown(ranks: int) -> str:
    """What the report says about the real trajectories it draws."""
    if ranks > 1:
        return (f"{SHOWN_PATIENTS} held-out patients of site 0, drawn at random on site 0's own rank; no other "
                "site's patients are drawn")
    return f"{SHOWN_PATIENTS} held-out patients drawn at random (a run of one process: every site's patients pooled)"


def evaluate_sequence_run(name: str, path: Path, cfg: RunConfig, data: SiteSequences,
                          comm: Communicator) -> SequenceSection:
    """Re-score one run's release as the job did, rewrite its `/evaluation` (rank 0) and draw its figures
    (collective). The figures show the consortium's release (isolated: every site's own patients together)
    against the held-out patients of every site; the spaghetti plot's real patients are rank 0's."""
    with h5py.File(path, "r") as f:
        releases = [read_sequences(f, table) for table in site_tables(path)]
        release = read_sequences(f, "pooled")  # every site's release together, as the job stored it
    per_site = releases_per_site(path)
    event = data.declared.visit_event
    scores, worst, sites = score_release(releases, per_site, data, event, comm, cfg.seed)
    if comm.is_root:
        rewrite_sequence_evaluation(path, scores, worst, sites)
        with h5py.File(path, "r") as f:  # the rewritten scores, with the job's wall time kept
            scores = {k: float(v) for k, v in f["evaluation"].attrs.items()}
    comm.barrier()
    labs = labs_of(data.holdout, event)
    profiles = time_profiles(data.holdout, release, labs, comm)
    figures = temporal_figures(data.holdout, release, profiles, labs, comm,
                               shown=shown_patients(data.holdout, cfg.seed), seed=cfg.seed)
    return SequenceSection(name, scores, figures, worst, sites)


def evaluate_sequence_file(path: str | Path, out: str | Path | None, comm: Communicator) -> list[SequenceSection]:
    """Evaluate a longitudinal run or comparison file: update every run file's `/evaluation` and (rank 0) write
    the report, by default beside the file with `.html`. In one process, a run of K sites is evaluated by K
    threads taking turns, each holding only its site's patients. The classifiers run on one OpenMP thread, as in
    the table suite: on a busy node scikit-learn's thread per core made each small fit ten times slower.
    Returns every strategy's section."""
    runs = run_files(path)

    def sections(c: Communicator) -> list[SequenceSection]:
        set_threads()
        with threadpool_limits(limits=1, user_api="openmp"):  # per thread: OpenMP's thread count is per thread
            cfg, data = real_patients(runs[0][1], c)
            return [evaluate_sequence_run(name, run, cfg, data, c) for name, run in runs]

    ranks = len(site_tables(runs[0][1]))
    found = SitesInOneProcess(ranks).run(sections)[0] if comm.size == 1 and ranks > 1 else sections(comm)
    if comm.is_root:
        report = Path(out) if out else Path(path).with_suffix(".html")
        write_sequence_report(report, found, f"hpcsynth evaluation: {Path(path).name}", real_shown(ranks))
    return found
