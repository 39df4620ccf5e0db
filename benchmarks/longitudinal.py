"""Longitudinal records: hpcsynth's SequenceVAE against SDV's PARSynthesizer on pbcseq (312 PBC patients' visits).

Both models train on the same patients (the project's split by patient, `load_site_sequences` with every site
pooled, the held-out share of a job) at their default training length (SequenceVAE's and PAR's default epochs),
one after the other in this process with the same torch threads; the whole `fit` is timed for each. Each then
releases as many patients as it trained on, and both releases are scored by `score_sequences` against the held-out
patients (train = the training patients). Prints every temporal score side by side with its direction, marks where
hpcsynth loses to PAR, and whether the targets are met. The last line is the fit wall-time ratio.

PAR takes one long table (a row per visit, the static columns repeated): sequence_key = the patient key,
sequence_index = the visit day, context_columns = the static columns; its metadata declares each column
categorical or numerical as hpcsynth's schema of the training patients does. Its samples come back through
`sequences_from_long`; visits that PAR placed on a day the patient already has are dropped (counted in the output),
since a patient cannot have two visits at one time.

With `--federated`, `hpcsynth run` under `mpiexec -n 3` on pbcseq split into 3 sites by age at entry (a covariate
partition of the context table), each strategy's temporal scores from its run file's `/evaluation`, and each
federated strategy's ratio to centralized on the trajectory scores (last line: FedAvg's worst ratio).

    python benchmarks/longitudinal.py [--seed 0] [--threads 1] [--vae-epochs N] [--par-epochs N]
    python benchmarks/longitudinal.py --federated [--rounds 30] [--local-epochs 10] [--strategies ...]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
import yaml

from hpcsynth.data.declaration import DataConfig, PartitionConfig
from hpcsynth.data.sequence_sources import SiteSequences, load_site_sequences
from hpcsynth.data.sequence_transformer import SequenceTransformer
from hpcsynth.data.sequences import Sequences, sequences_from_long
from hpcsynth.evaluate.temporal_metrics import TEMPORAL_METRICS
from hpcsynth.evaluate.temporal_score import score_sequences
from hpcsynth.io.evaluation import read_evaluation
from hpcsynth.io.runfile import compared_strategies
from hpcsynth.models import SequenceVAE

COHORT = "pbcseq"
HOLDOUT = DataConfig.holdout  # a job's held-out share of patients
SPEED_TARGET = 1 / 5  # hpcsynth's fit at most this share of PAR's
FEDERATED_TARGET = 0.95  # a federated strategy's score at least this share of centralized's
# the scores of whole trajectories the federated target is stated on: detection, next-visit utility, privacy
TRAJECTORY = ("trajectory_detection_auroc", "temporal_tstr_r2", "trajectory_dcr_ratio", "trajectory_nndr_median",
              "trajectory_exact_match_rate")
FEDERATED = ("centralized", "isolated", "fedavg", "local_sgd")
# figures of the real patients alone, the same for every release (the next-visit model trained on real visits; the
# held-out patients' distance to the training patients): shown for scale, neither side can win them
REFERENCE = ("temporal_trtr_r2", "trajectory_dcr_holdout_p5")


# -- the split and the peer's table ---------------------------------------------------------------------------------
def patients(seed: int) -> SiteSequences:
    """pbcseq's training and held-out patients, as a centralized job splits them (every site pooled)."""
    return load_site_sequences(DataConfig(builtin=COHORT), None, 1, seed)


def long_table(seqs: Sequences) -> pd.DataFrame:
    """One row per visit with the patient's static columns repeated: the table PAR trains on."""
    return seqs.visits.merge(seqs.context, on=seqs.key, how="left")[[seqs.key, *seqs.context_columns, seqs.index,
                                                                     *seqs.visit_columns]]


def par_metadata(train: Sequences, categorical: list[str]):
    """SDV metadata of the long table: the key as the sequence key, the day as the sequence index, and each column
    categorical or numerical as hpcsynth's schema of the training patients has it."""
    from sdv.metadata import Metadata

    schema = SequenceTransformer(categorical).fit(train)
    kinds = {s.name: s.kind for t in (schema.context_, schema.visit_) for s in t.schema_}
    columns = {train.key: {"sdtype": "id"}, train.index: {"sdtype": "numerical"}}
    for name, kind in kinds.items():
        columns[name] = {"sdtype": "categorical" if kind in ("categorical", "binary") else "numerical"}
    return Metadata.load_from_dict({"tables": {COHORT: {"columns": columns, "sequence_key": train.key,
                                                        "sequence_index": train.index}}})


def from_par(frame: pd.DataFrame, like: Sequences) -> tuple[Sequences, int]:
    """PAR's samples as `Sequences`, and how many of its visits repeated a day their patient already had (dropped:
    keep the first)."""
    twice = frame.duplicated(subset=[like.key, like.index])
    frame = frame[~twice].reset_index(drop=True)
    seqs = sequences_from_long(frame, like.key, like.index, like.context_columns, "PAR samples")
    return seqs, int(twice.sum())


# -- the two fits -----------------------------------------------------------------------------------------------------
def fit_sequence_vae(data: SiteSequences, epochs: int | None, seed: int) -> tuple[Sequences, float, float]:
    """SequenceVAE at its default length (or `epochs`): the release and the whole fit's wall and CPU time."""
    model = SequenceVAE(categorical=data.declared.categorical, ends=data.declared.ends, seed=seed,
                        **({"epochs": epochs} if epochs else {}))
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(data.train)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return model.sample(data.train.n_patients), wall, cpu


def fit_par(data: SiteSequences, epochs: int | None, seed: int) -> tuple[Sequences, float, float, float, int]:
    """PARSynthesizer at its default length (or `epochs`): the release, the whole fit's wall and CPU time, the
    sampling wall time and the visits dropped as repeated days."""
    from sdv.sequential import PARSynthesizer

    torch.manual_seed(seed)
    np.random.seed(seed)
    train = data.train
    model = PARSynthesizer(par_metadata(train, data.declared.categorical), context_columns=train.context_columns,
                           **({"epochs": epochs} if epochs else {}))
    table = long_table(train)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit({COHORT: table})
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    samples = model.sample_sequences(train.n_patients)[COHORT]
    sampling = time.perf_counter() - start
    release, dropped = from_par(samples, train)
    return release, wall, cpu, sampling, dropped


def default_epochs() -> tuple[int, int]:
    """The default training lengths: SequenceVAE's and PAR's `epochs`."""
    import inspect

    from sdv.sequential import PARSynthesizer

    return (inspect.signature(SequenceVAE).parameters["epochs"].default,
            inspect.signature(PARSynthesizer).parameters["epochs"].default)


def sign(name: str) -> str:
    return "+" if TEMPORAL_METRICS[name].direction == "higher" else "-"


def loses(name: str, ours: float, peer: float) -> bool:
    """True when hpcsynth's score is worse than the peer's in the score's direction (NaN never loses)."""
    if not (np.isfinite(ours) and np.isfinite(peer)):
        return False
    return ours < peer if TEMPORAL_METRICS[name].direction == "higher" else ours > peer


def peer(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    data = patients(args.seed)
    vae_default, par_default = default_epochs()
    vae_epochs, par_epochs = args.vae_epochs or vae_default, args.par_epochs or par_default
    print(f"# {date.today()} {platform.machine()} {platform.processor() or ''} ({os.cpu_count()} cores), "
          f"torch {torch.__version__}, {args.threads} torch thread(s), seed {args.seed}")
    print(f"# {COHORT}: {data.train.n_patients} training / {data.holdout.n_patients} held-out patients "
          f"({len(data.train.visits)} / {len(data.holdout.visits)} visits); sequence_vae {vae_epochs} epochs"
          f"{' (default)' if vae_epochs == vae_default else ''}, PAR {par_epochs} epochs"
          f"{' (default)' if par_epochs == par_default else ''}")
    ours, ours_wall, ours_cpu = fit_sequence_vae(data, args.vae_epochs, args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs, par_wall, par_cpu, par_sampling, dropped = fit_par(data, args.par_epochs, args.seed)
    print(f"\nwhole fit: sequence_vae {ours_wall:.1f} s wall ({ours_cpu:.1f} s CPU), PAR {par_wall:.1f} s wall "
          f"({par_cpu:.1f} s CPU); CPU ratio {ours_cpu / par_cpu:.3f}; load average {os.getloadavg()[0]:.1f}")
    print(f"PAR sampling {par_sampling:.1f} s wall; {dropped} PAR visits on a day their patient already had, dropped")
    print(f"releases: sequence_vae {ours.n_patients} patients / {len(ours.visits)} visits, PAR {theirs.n_patients}"
          f" patients / {len(theirs.visits)} visits")
    scores = {name: score_sequences(data.holdout, release, train=data.train, event=data.declared.visit_event,
                                    ends=data.declared.ends, seed=args.seed)
              for name, release in (("sequence_vae", ours), ("PAR", theirs))}
    names = [m for m in TEMPORAL_METRICS if m in scores["sequence_vae"] or m in scores["PAR"]]
    table = pd.DataFrame({"direction": [sign(m) for m in names],
                          "sequence_vae": [scores["sequence_vae"].get(m, np.nan) for m in names],
                          "PAR": [scores["PAR"].get(m, np.nan) for m in names]}, index=names)
    table["hpcsynth loses"] = ["(real only)" if m in REFERENCE else "LOSES" if loses(m, r["sequence_vae"], r["PAR"])
                               else "" for m, r in table.iterrows()]
    print(f"\ntemporal scores against the {data.holdout.n_patients} held-out patients (+ higher / - lower is better)")
    with pd.option_context("display.width", 200):
        print(table.round(4).to_string())
    lost = [m for m in names if loses(m, table.loc[m, "sequence_vae"], table.loc[m, "PAR"])]
    ratio = ours_wall / par_wall
    print(f"\ntarget: sequence_vae >= PAR on every temporal score: {'met' if not lost else 'not met'}"
          + (f" (loses on {len(lost)} of {len(names)}: {', '.join(lost)})" if lost else ""))
    print(f"target: sequence_vae fit <= 1/5 of PAR's wall time: {'met' if ratio <= SPEED_TARGET else 'not met'}")
    print(f"sequence_vae fit wall time / PAR fit wall time: {ratio:.3f}")


# -- the federated mode ---------------------------------------------------------------------------------------------
def run_job(args: argparse.Namespace, folder: Path) -> Path:
    """The 3-site pbcseq job (split by age at entry) under mpiexec; its comparison file."""
    job = {"seed": args.seed,
           "data": {"builtin": COHORT, "partition": {"kind": "covariate", "column": "age", "n_sites": 3}},
           "model": {"name": "sequence_vae"},
           "federation": {"strategy": args.strategies.split(","), "rounds": args.rounds,
                          "local_epochs": args.local_epochs},
           "output": str(folder / "pbcseq-by-age.h5"), "progress": False}
    path = folder / "pbcseq-by-age.yaml"
    path.write_text(yaml.safe_dump(job))
    mpiexec = shutil.which("mpiexec") or str(Path(sys.executable).with_name("mpiexec"))
    subprocess.run([mpiexec, "-n", "3", sys.executable, "-m", "hpcsynth.cli", "run", str(path)], check=True,
                   stdout=subprocess.DEVNULL)
    return folder / "pbcseq-by-age.h5"


def sites_by_age(seed: int) -> str:
    """Each site's patients and age band under the job's partition, as the job's ranks load them."""
    cfg = DataConfig(builtin=COHORT, partition=PartitionConfig(kind="covariate", column="age", n_sites=3))
    parts = []
    for site in range(3):
        data = load_site_sequences(cfg, site, 3, seed)
        ages = pd.concat([data.train.context["age"], data.holdout.context["age"]])
        parts.append(f"site {site}: {data.train.n_patients} training + {data.holdout.n_patients} held-out patients, "
                     f"age {ages.min():.0f}-{ages.max():.0f}")
    return "; ".join(parts)


def stored_scores(comparison: Path) -> pd.DataFrame:
    """Each strategy's `/evaluation` attributes (isolated: the sites' mean, and its worst site as a row)."""
    rows = {}
    with h5py.File(comparison) as f:
        for name in compared_strategies(f):
            stored = read_evaluation(f["runs"][name])
            rows[name] = stored.scores
            if stored.worst:
                rows[f"{name} (worst site)"] = stored.worst
    return pd.DataFrame.from_dict(rows, orient="index")


def goodness(name: str, values: pd.Series) -> pd.Series:
    """A trajectory score as a positive figure where more is better, so that a ratio to centralized means "this
    share of centralized's quality": detection as 2 (1 - AUROC) capped at 1 (1 = indistinguishable, 0 = always
    told apart), R-squared as 1 / (1 - R2) (the inverse of the error share; R2 may be negative), a rate that
    should be low as its complement, a score that should be high as it is."""
    if name == "trajectory_detection_auroc":
        return (2 * (1 - values)).clip(upper=1.0)
    if name.endswith("_r2"):
        return 1 / (1 - values)
    return values if TEMPORAL_METRICS[name].direction == "higher" else 1 - values


def to_centralized(table: pd.DataFrame) -> pd.DataFrame:
    """Each strategy's share of centralized on every trajectory score (`goodness` over centralized's: 1 is
    parity, above 1 better than centralized)."""
    shown = [m for m in TRAJECTORY if m in table.columns]
    return pd.DataFrame({m: goodness(m, table[m]) / goodness(m, table[m])["centralized"] for m in shown})


def federated(args: argparse.Namespace) -> None:
    print(f"# {date.today()} {platform.machine()} {platform.processor() or ''} ({os.cpu_count()} cores), "
          f"mpiexec -n 3, one rank per site; {COHORT} split into 3 sites by age at entry (covariate partition of "
          f"the patients); sequence_vae, {args.rounds} rounds x {args.local_epochs} local epochs, seed {args.seed}")
    print(f"# {sites_by_age(args.seed)}")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        table = stored_scores(run_job(args, Path(tmp)))
        print(f"# the job took {time.perf_counter() - start:.0f} s")
    names = [m for m in TEMPORAL_METRICS if m in table.columns]
    print("\ntemporal scores of each strategy's release against the consortium's held-out patients "
          "(isolated: one site alone, the sites' mean; + higher / - lower is better)")
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        shown = table[names].T
        shown.insert(0, "direction", [sign(m) for m in names])
        print(shown.round(4).to_string())
        ratios = to_centralized(table)
        print("\nshare of centralized on the trajectory scores, each as a figure where more is better: detection "
              "2(1 - AUROC) capped at 1, TSTR 1/(1 - R2), exact-match rate 1 - rate, DCR ratio and NNDR as they "
              "are (1 = parity, above 1 = better than centralized)")
        print(ratios.round(3).to_string())
    for name in ("fedavg", "local_sgd"):
        if name in ratios.index:
            worst = ratios.loc[name].min()
            print(f"target: {name} >= {FEDERATED_TARGET} of centralized on every trajectory score: "
                  f"{'met' if worst >= FEDERATED_TARGET else 'not met'} (worst {ratios.loc[name].idxmin()} "
                  f"{worst:.3f})")
    print(f"fedavg / centralized on the trajectory scores (worst): {ratios.loc['fedavg'].min():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both fits")
    parser.add_argument("--vae-epochs", type=int, default=0, help="SequenceVAE epochs (default: its default)")
    parser.add_argument("--par-epochs", type=int, default=0, help="PAR epochs (default: its default)")
    parser.add_argument("--federated", action="store_true", help="the 3-site federated comparison instead")
    parser.add_argument("--rounds", type=int, default=30, help="--federated: rounds")
    parser.add_argument("--local-epochs", type=int, default=10, help="--federated: local epochs per round")
    parser.add_argument("--strategies", default=",".join(FEDERATED), help="--federated: the strategies")
    args = parser.parse_args()
    if args.federated:
        federated(args)
    else:
        peer(args)


if __name__ == "__main__":
    main()
