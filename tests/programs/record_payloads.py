"""Under mpiexec -n 3: run the real job with a communicator that records every payload this rank sends,
then look for this site's real rows (training and held-out) in what was sent."""
import sys

import numpy as np
import pandas as pd

from hpcsynth.comm import MPIComm
from hpcsynth.config import load
from hpcsynth.data.sources import load_site
from hpcsynth.jobs.train import main as run_job

ROW_COLUMNS = ["age", "hb", "plt", "anc", "bm_blasts", "os_months"]


class RecordingComm(MPIComm):
    """MPIComm that keeps a copy of everything that leaves this rank."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list = []

    def _allreduce(self, buffer, op):
        self.sent.append(buffer.copy())
        super()._allreduce(buffer, op)

    def weighted_sum(self, buffer, weight):
        self.sent.append(buffer * weight)  # what this rank puts into the shared reduction
        return super().weighted_sum(buffer, weight)

    def allgather(self, obj):
        self.sent.append(obj)
        return super().allgather(obj)

    def gather(self, obj, root=0):
        self.sent.append(obj)
        return super().gather(obj, root)

    def bcast(self, obj, root=0):
        if self.rank == root:
            self.sent.append(obj)
        return super().bcast(obj, root)


def numbers_in(obj) -> set:
    """Every float that a payload carries, however nested (arrays, frames, lists, dicts)."""
    if isinstance(obj, pd.DataFrame):
        return set().union(*(numbers_in(obj[c]) for c in obj.columns)) if len(obj.columns) else set()
    if isinstance(obj, pd.Series):
        return numbers_in(pd.to_numeric(obj, errors="coerce").to_numpy(dtype=float, na_value=np.nan))
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "fiu":
        return set(obj.astype(float).ravel().tolist())
    if isinstance(obj, (list, tuple, set)):
        return set().union(*(numbers_in(o) for o in obj)) if obj else set()
    if isinstance(obj, dict):
        return numbers_in(list(obj.values()))
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return {float(obj)}
    return set()


def rows_found(rows: pd.DataFrame, payloads: list) -> int:
    """How many rows have all their values in one payload."""
    found = 0
    for payload in payloads:
        values = numbers_in(payload)
        present = rows[ROW_COLUMNS].isin(values) | rows[ROW_COLUMNS].isna()
        found += int(present.all(axis=1).sum())
    return found


def main(config: str) -> None:
    comm = RecordingComm()
    cfg = load(config)
    run_job(cfg, comm)
    site = load_site(cfg.data, comm.rank, comm.size, cfg.seed)
    rows = pd.concat([site.train, site.holdout])
    rows = rows[rows[ROW_COLUMNS].notna().all(axis=1)]
    assert len(rows) > 50
    assert rows_found(rows.head(20), [site.train]) == 20, "the checker must find rows that are sent"
    leaked = rows_found(rows, comm.sent)
    kinds = sorted({type(p).__name__ for p in comm.sent})
    print(f"rank {comm.rank}: {len(comm.sent)} payloads ({', '.join(kinds)}), rows found: {leaked}", flush=True)
    assert leaked == 0


if __name__ == "__main__":
    main(sys.argv[1])
