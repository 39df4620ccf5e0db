"""Patients as fixed-width rows: the reversible encoding that lets a sequence generator train through the same
round loop, batches, DP-SGD clipping (per patient) and strategies as the table generators.

One row per patient, in blocks:

    context                  the static columns through a `TableTransformer` (its spans)
    length                   one-hot over 1..T_max visits
    visit 0 .. visit T_max-1 each: the interval since the previous visit (one Gaussian value), the per-visit
                             columns through a second `TableTransformer` (a numeric column with missing values
                             carries its present/missing flag), and a visit-present mask (1 up to the length)

The interval goes through the quantile map of the existing numeric transform (monotone, so it is the same as
normalising log-days, and it keeps the skewed interval distribution exactly to the grid's resolution); the first
visit is at day 0 and its interval is 0 and unused. Every statistic is mergeable: the length histogram is summed
over sites, and the three transforms are fitted collectively as the table transform is, so the fit is identical
on every site and equal to the pooled fit. Patients longer than T_max keep their first T_max visits.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.data.schema import DataError
from hpcsynth.data.sequences import Sequences
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform, NumericTransform

GAP = "__interval__"  # the interval column of the interval transform (days since the previous visit)
HARD = 1e4  # a logit this far below the chosen level's makes `decode` draw that level


def hard_logits(onehot: np.ndarray) -> np.ndarray:
    """Logits under which a sampled softmax draw is the one-hot's level (what `decode` reads for drawn levels)."""
    return (onehot - 1.0) * HARD


class SequenceTransformer:
    """Encode `Sequences` as one float32 row per patient and decode generated rows back into `Sequences`.

    T_max, the visits a row holds, is the `quantile` of the pooled sequence lengths (merged as a histogram), so
    that a few very long records do not widen every row; `max_visits` caps it further.

    Parameters
    ----------
    categorical : list of str, default ()
        Context or per-visit columns to treat as categorical whatever their dtype.
    quantile : float, default 0.98
        T_max is the smallest length at least this share of patients do not exceed (at least 2).
    max_visits : int or None, default None
        An upper bound on T_max.
    ends : dict of str to list, default {}
        {categorical visit column: its levels that end a patient's follow-up} (data.sequence.ends): a generator
        ends a patient at the first visit it draws at one of them (`end_positions_`).
    """

    def __init__(self, categorical: list[str] = (), quantile: float = 0.98, max_visits: int | None = None,
                 ends: dict[str, list] | None = None) -> None:
        self.categorical = list(categorical)
        self.quantile = quantile
        self.max_visits = max_visits
        self.ends = dict(ends or {})

    # -- fitting ------------------------------------------------------------------------------------------------
    def fit(self, sequences: Sequences, comm: Communicator | None = None) -> SequenceTransformer:
        """T_max from the merged length histogram, then the context, per-visit and interval transforms from
        merged statistics (collective: every rank calls it with its own patients)."""
        comm = comm or SoloComm()
        if not 0.0 < self.quantile <= 1.0:
            raise ValueError(f"quantile: expected a share in (0, 1], got {self.quantile!r}")
        if self.max_visits is not None and self.max_visits < 2:
            raise ValueError(f"max_visits: expected at least 2 (a sequence needs intervals), got {self.max_visits!r}")
        self.key_, self.index_ = sequences.key, sequences.index
        self.length_counts_ = _merged_lengths(sequences.lengths().to_numpy(), comm)
        self.t_max_ = _t_max(self.length_counts_, self.quantile, self.max_visits)
        visits = self._truncated(sequences.visits)
        self.context_ = TableTransformer(self._declared(sequences.context_columns)).fit(
            sequences.context[sequences.context_columns], comm)
        self.visit_ = TableTransformer(self._declared(sequences.visit_columns)).fit(
            visits[sequences.visit_columns], comm)
        gaps = pd.DataFrame({GAP: _gaps(visits, self.key_, self.index_)})
        if comm.Allreduce(np.array([float(gaps[GAP].notna().sum())]), "sum")[0] == 0:
            raise DataError("sequences: no patient on any site has a second visit; a sequence model needs intervals",
                            everywhere=True)
        self.interval_ = TableTransformer(kinds={GAP: "continuous"}).fit(gaps.dropna(), comm)
        self.end_positions_ = self._end_positions()
        return self

    def _end_positions(self) -> np.ndarray:
        """The positions, in a visit's block (the interval first), of the one-hot columns of the levels that end
        follow-up (`ends`): each a categorical visit column's level seen in the data."""
        positions, start = [], 1
        for t in self.visit_.transforms_:
            name = t.spec.name
            if name in self.ends:
                if not isinstance(t, CategoricalTransform):
                    raise DataError(f"data.sequence.ends.{name}: {name!r} is not categorical or binary; its levels "
                                    "cannot end follow-up (declare it in data.categorical)", everywhere=True)
                codes = t.codes(pd.Series(list(self.ends[name])))
                positions += [start + int(c) for c in codes if c < len(t.labels_)]
            start += t.width
        unknown = sorted(set(self.ends) - set(self.visit_columns))
        if unknown:
            raise DataError(f"data.sequence.ends.{unknown[0]}: not a per-visit column", everywhere=True)
        return np.asarray(positions, dtype=np.int64)

    def _declared(self, columns: list[str]) -> list[str]:
        return [c for c in self.categorical if c in columns]

    def _truncated(self, visits: pd.DataFrame) -> pd.DataFrame:
        """Each patient's first `t_max_` visits (the visits are sorted by key, then index)."""
        return visits[visits.groupby(self.key_, sort=False).cumcount() < self.t_max_]

    # -- layout -------------------------------------------------------------------------------------------------
    @property
    def context_columns(self) -> list[str]:
        return self.context_.columns

    @property
    def visit_columns(self) -> list[str]:
        return self.visit_.columns

    @property
    def visit_width(self) -> int:
        """Columns per visit: the interval, the per-visit columns' encoding, the present mask."""
        return 1 + self.visit_.width + 1

    @property
    def width(self) -> int:
        return self.context_.width + self.t_max_ + self.t_max_ * self.visit_width

    @property
    def spans(self) -> list[tuple[str, int]]:
        """The row's layout block after block: the context's spans, ("softmax", T_max) for the length, then per
        visit ("gaussian", 1) for the interval, the per-visit spans and ("mask", 1) for the visit-present flag
        (a target's mask, not a modelled output)."""
        visit = [("gaussian", 1), *self.visit_.spans, ("mask", 1)]
        return [*self.context_.spans, ("softmax", self.t_max_), *visit * self.t_max_]

    # -- encoding -----------------------------------------------------------------------------------------------
    def encode(self, sequences: Sequences) -> np.ndarray:
        """(patients, width) float32, rows in the order of `sequences.context`."""
        keys = sequences.context[self.key_].to_numpy()
        n, t_max = len(keys), self.t_max_
        visits = self._truncated(sequences.visits)
        row = pd.Index(keys).get_indexer(visits[self.key_])
        if (row < 0).any():
            raise DataError(f"sequences: visits of patient {visits[self.key_].iloc[int(np.argmax(row < 0))]} "
                            f"have no context row")
        step = visits.groupby(self.key_, sort=False).cumcount().to_numpy()
        lengths = np.bincount(row, minlength=n)
        if (lengths == 0).any():
            raise DataError(f"sequences: patient {keys[int(np.argmax(lengths == 0))]} has no visits")
        per_visit = np.zeros((len(visits), self.visit_width), dtype=np.float32)
        gaps = _gaps(visits, self.key_, self.index_)
        present = np.isfinite(gaps)
        per_visit[present, 0] = self.interval_.encode(pd.DataFrame({GAP: gaps[present]}))[:, 0]
        per_visit[:, 1:-1] = self.visit_.encode(visits[self.visit_columns])
        per_visit[:, -1] = 1.0
        block = np.zeros((n, t_max, self.visit_width), dtype=np.float32)
        block[row, step] = per_visit
        length = np.zeros((n, t_max), dtype=np.float32)
        length[np.arange(n), lengths - 1] = 1.0
        parts = [self.context_.encode(sequences.context[self.context_columns]), length, block.reshape(n, -1)]
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)

    # -- decoding -----------------------------------------------------------------------------------------------
    def split(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The context block, the length block and the visits as (rows, T_max, visit width)."""
        c, t = self.context_.width, self.t_max_
        return matrix[:, :c], matrix[:, c:c + t], matrix[:, c + t:].reshape(len(matrix), t, self.visit_width)

    def decode(self, matrix: np.ndarray, rng: np.random.Generator, keys: np.ndarray | None = None) -> Sequences:
        """`Sequences` from generator output in this layout (values for Gaussian blocks, logits for softmax
        blocks, as `TableTransformer.decode` reads them): the context and the length are drawn from their
        blocks, then `assemble` keeps that many visits. `keys` name the patients (default 0..rows-1)."""
        context_block, length_block, visits = self.split(np.asarray(matrix, dtype=np.float32))
        context = self.context_.decode(context_block, rng)
        return self.assemble(context, self.context_lengths(length_block, rng), visits, rng, keys)

    def assemble(self, context: pd.DataFrame, lengths: np.ndarray, visits: np.ndarray, rng: np.random.Generator,
                 keys: np.ndarray | None = None) -> Sequences:
        """`Sequences` from decoded context rows, their lengths (1..T_max) and the visits block (rows, T_max,
        visit width) in generator-output form: visits beyond a patient's length are dropped, per-visit values are
        NaN where their missingness flag says missing, and the index is the running sum of the intervals from
        day 0."""
        n = len(context)
        keys = np.arange(n) if keys is None else np.asarray(keys)
        context = context.reset_index(drop=True)
        context.insert(0, self.key_, keys)
        kept = np.arange(self.t_max_)[None, :] < lengths[:, None]
        chosen = visits[kept]  # (visits, visit width), patient-major
        gap = self.interval_.decode(chosen[:, :1], rng)[GAP].to_numpy(dtype=np.float64)
        gap[np.broadcast_to(np.arange(self.t_max_) == 0, kept.shape)[kept]] = 0.0  # a first visit is day 0
        patient = np.repeat(np.arange(n), lengths)
        index = pd.Series(gap).groupby(patient).cumsum().to_numpy()
        values = self.visit_.decode(chosen[:, 1:-1], rng)
        values.insert(0, self.index_, index)
        values.insert(0, self.key_, keys[patient])
        return Sequences(context, values.reset_index(drop=True), self.key_, self.index_)

    def context_lengths(self, length_block: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Lengths (1..T_max) drawn from the length block's logits, one uniform per row (as a categorical block
        is drawn)."""
        weights = np.exp(length_block - length_block.max(axis=1, keepdims=True))
        cumulative = np.cumsum(weights, axis=1)
        u = rng.random((len(length_block), 1)) * cumulative[:, -1:]
        return np.minimum((cumulative <= u).sum(axis=1), self.t_max_ - 1).astype(np.int64) + 1

    def gaussian_flags(self, transformer: TableTransformer) -> list[int]:
        """For each Gaussian column of `transformer`'s encoding, the column of its present flag (-1 when the
        column has no missing values): a value's loss counts only where it was measured."""
        flags, start = [], 0
        for t in transformer.transforms_:
            for kind, width in t.spans:
                if kind == "gaussian":
                    has_flag = isinstance(t, NumericTransform) and t.has_missing
                    flags.append(start + 1 if has_flag else -1)
                start += width
        return flags

    # -- state --------------------------------------------------------------------------------------------------
    def state(self) -> str:
        """The fitted transform as JSON text (each part's state and the length histogram)."""
        return json.dumps({"categorical": self.categorical, "quantile": self.quantile, "max_visits": self.max_visits,
                           "ends": self.ends, "key": self.key_, "index": self.index_, "t_max": self.t_max_,
                           "length_counts": self.length_counts_.tolist(), "context": self.context_.state(),
                           "visit": self.visit_.state(), "interval": self.interval_.state()})

    @classmethod
    def from_state(cls, text: str) -> SequenceTransformer:
        data = json.loads(text)
        self = cls(data["categorical"], data["quantile"], data["max_visits"], data.get("ends"))
        self.key_, self.index_, self.t_max_ = data["key"], data["index"], int(data["t_max"])
        self.length_counts_ = np.asarray(data["length_counts"], dtype=np.float64)
        self.context_ = TableTransformer.from_state(data["context"])
        self.visit_ = TableTransformer.from_state(data["visit"])
        self.interval_ = TableTransformer.from_state(data["interval"])
        self.end_positions_ = self._end_positions()
        return self


def _gaps(visits: pd.DataFrame, key: str, index: str) -> np.ndarray:
    """Days since the patient's previous visit (NaN at a first visit)."""
    return visits.groupby(key, sort=False)[index].diff().to_numpy(dtype=np.float64)


def _merged_lengths(lengths: np.ndarray, comm: Communicator) -> np.ndarray:
    """The histogram of sequence lengths summed over sites (index = length; collective)."""
    longest = int(comm.Allreduce(np.array([float(lengths.max(initial=0))]), "max")[0])
    if longest == 0:
        raise DataError("sequences: no site has a patient with a visit", everywhere=True)
    return comm.Allreduce(np.bincount(lengths, minlength=longest + 1).astype(np.float64), "sum")


def _t_max(counts: np.ndarray, quantile: float, max_visits: int | None) -> int:
    """The smallest length that at least `quantile` of the patients do not exceed, at least 2, at most
    `max_visits`."""
    cdf = np.cumsum(counts) / counts.sum()
    t_max = max(int(np.searchsorted(cdf, quantile - 1e-12)), 2)
    return min(t_max, max_visits) if max_visits is not None else t_max
