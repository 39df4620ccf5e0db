"""Under mpiexec: every rank loads its site's visits as a job does (`agree` around `load_site_sequences`, then the
collective `check_sites_disjoint`) inside `collectively`, and prints either its patient count or the error it
raised (between << and >>), so the test can see that every rank stopped with the same line.

Usage: sequence_sites.py JOB.yaml            (the job's data section: data.sequence with a long file per site)
       sequence_sites.py --tables MISSING    (in-memory context and visits tables; site 1's context lists
                                              MISSING patients that have no visits)
"""
import sys

import numpy as np
import pandas as pd

from hpcsynth.comm import MPIComm
from hpcsynth.data.schema import DataError
from hpcsynth.data.sequence_sources import check_sites_disjoint, count_sequence_sites, load_site_sequences
from hpcsynth.data.sequences import check_one_site_per_patient, sequences_from_tables
from hpcsynth.jobs.sites import agree
from hpcsynth.launch import collectively, load_job


def from_job(path: str, comm: MPIComm) -> None:
    cfg = load_job(path)
    n_sites = count_sequence_sites(cfg.data)
    data = agree(lambda: load_site_sequences(cfg.data, comm.rank, n_sites, cfg.seed), comm)
    check_sites_disjoint(data, comm, cfg.seed)
    print(f"rank {comm.rank} loaded {data.train.n_patients + data.holdout.n_patients} patients", flush=True)


def from_tables(missing: int, comm: MPIComm) -> None:
    rng = np.random.default_rng(comm.rank)
    keys = [f"s{comm.rank}-{i}" for i in range(20)]
    visits = pd.DataFrame({"pid": np.repeat(keys, 3), "day": np.tile([0, 30, 90], 20), "hb": rng.normal(9, 1, 60)})
    extra = [f"s{comm.rank}-x{i}" for i in range(missing if comm.rank == 1 else 0)]
    context = pd.DataFrame({"pid": keys + extra, "age": rng.normal(70, 8, 20 + len(extra))})
    seqs = agree(lambda: sequences_from_tables(context, visits, "pid", "day", f"site{comm.rank}.csv"), comm)
    check_one_site_per_patient(seqs.context["pid"], comm, 0, "tables")
    print(f"rank {comm.rank} loaded {seqs.n_patients} patients", flush=True)


def main() -> None:
    comm = MPIComm()

    def work() -> None:
        try:
            if sys.argv[1] == "--tables":
                from_tables(int(sys.argv[2]), comm)
            else:
                from_job(sys.argv[1], comm)
        except DataError as err:
            print(f"<<rank {comm.rank} raised: {err}>>", flush=True)  # delimited: ranks' lines may interleave
            raise

    collectively(comm, work)


if __name__ == "__main__":
    main()
