"""One row of the run file's /rounds table: what a round of training (or one exchange of counts) cost, and the
release's scores where the round was evaluated."""
from __future__ import annotations

import resource
import sys
from dataclasses import dataclass, field, fields

import numpy as np


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (getrusage's high-water mark: kB on Linux, bytes on
    macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3


@dataclass
class RoundRecord:
    """One row of the run file's /rounds table.

    Parameters
    ----------
    round : int
        The round's number, from 0.
    loss : float
        The mean training loss over the sites, weighted by their rows.
    wall_s, compute_s, comm_s : float
        Wall time of the round, and its split into local work and communication.
    bytes_reduced : int
        Payload of every buffer reduction of the round (this rank's view).
    steps : int
        Optimiser steps of the round on this site.
    epsilon : float
        The most privacy any site has spent so far (0 without DP-SGD).
    max_rss_mb : float
        The largest peak resident memory of any rank so far, in MB (0 where not measured: run files written
        before it was recorded, the one-off exchange of counts).
    compile_s : float
        The most time any rank spent compiling training steps during the round (inside `wall_s`; 0 when nothing
        compiled, as in every round after the first with a warm or no compile).
    eval_s : float
        Wall time of evaluating the release after this round, sampling included (NaN when not evaluated).
    scores : dict
        The release's scores after this round (empty when not evaluated); one column of /rounds each.
    """

    round: int
    loss: float
    wall_s: float
    compute_s: float
    comm_s: float
    bytes_reduced: int
    steps: int
    epsilon: float = 0.0
    max_rss_mb: float = 0.0
    compile_s: float = 0.0
    eval_s: float = float("nan")
    scores: dict[str, float] = field(default_factory=dict)

    @classmethod
    def columns(cls) -> list[tuple[str, str]]:
        """The fixed columns and their dtypes (the scores follow them)."""
        return [(f.name, "<f8" if f.type in ("float", float) else "<i8") for f in fields(cls) if f.name != "scores"]

    @classmethod
    def table(cls, records: list[RoundRecord]) -> np.ndarray:
        """The records as one structured array: the fixed columns, then every score any round has (NaN in the
        rounds that were not evaluated)."""
        names = list(dict.fromkeys(k for r in records for k in r.scores))
        dtype = np.dtype(cls.columns() + [(name, "<f8") for name in names])
        fixed = [name for name, _ in cls.columns()]
        return np.array([tuple(getattr(r, c) for c in fixed) + tuple(r.scores.get(n, np.nan) for n in names)
                         for r in records], dtype=dtype)

    @classmethod
    def from_row(cls, row: np.void) -> RoundRecord:
        """A record back from a row of `table` (a run file's /rounds)."""
        names = row.dtype.names
        fixed = {name: row[name].item() for name, _ in cls.columns() if name in names}
        scores = {n: float(row[n]) for n in names if n not in fixed and np.isfinite(row[n])}
        return cls(**fixed, scores=scores)
