"""One row of the run file's /rounds table: what a round of training (or one exchange of counts) cost."""
from __future__ import annotations

from dataclasses import astuple, dataclass, fields

import numpy as np


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
    """

    round: int
    loss: float
    wall_s: float
    compute_s: float
    comm_s: float
    bytes_reduced: int
    steps: int
    epsilon: float = 0.0

    @classmethod
    def dtype(cls) -> np.dtype:
        return np.dtype([(f.name, "<f8" if f.type in ("float", float) else "<i8") for f in fields(cls)])

    @classmethod
    def table(cls, records: list[RoundRecord]) -> np.ndarray:
        return np.array([astuple(r) for r in records], dtype=cls.dtype())
