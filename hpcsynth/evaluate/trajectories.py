"""Whole trajectories as fixed-length vectors, and the privacy of a release of sequences.

A patient's trajectory is summarised by one row: the static context, the number of visits, the follow-up span,
the mean and spread of the intervals, and per lab its first, last and mean value, its spread, its slope over time
and the share of visits where it is missing. The privacy scores need a distance between whole sequences that the
project's exact nearest-neighbour kernels (`hpcsynth.kernels`, CPU or CUDA through
`hpcsynth.evaluate.neighbours.NeighbourSearch`) can search; those take vectors of one length. A summary gives
that at the cost of O(visits) per patient, keeps what a re-identifying attacker would match on (level, trend,
variability, how often and how long a patient was seen) and does not depend on how the visits are aligned,
whereas dynamic time warping has no fixed-length form and is quadratic per pair.

Distances are Euclidean after scaling every numeric summary to [0, 1] by the range of every site's training
patients (merged with two `Allreduce`), a summary that is undefined (the slope of a single visit, a lab never
measured) placed at the middle of its range, and each context category one-hot scaled so that a mismatch costs 1,
as `hpcsynth.evaluate.privacy.privacy_features` does for rows. Per site, DCR and NNDR are the distances of every
synthetic trajectory (and of every held-out one) to the closest training trajectories of that site; the distances
are gathered on rank 0 and scored by `hpcsynth.evaluate.attacks.distance_scores`. The exact-match rate counts the
synthetic trajectories that copy a training patient's whole record (context and every visit) on any site.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.data.sequences import Sequences
from hpcsynth.evaluate.attacks import Distances, distance_scores
from hpcsynth.evaluate.neighbours import NeighbourSearch

LAB_SUMMARIES = ("first", "last", "mean", "sd", "slope", "missing")
DAYS_PER_YEAR = 365.25


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def categorical_context(seqs: Sequences) -> list[str]:
    """The context columns that are not numeric (coded or one-hot rather than measured)."""
    return [c for c in seqs.context_columns if not pd.api.types.is_numeric_dtype(seqs.context[c])]


def summary(seqs: Sequences, labs: list[str]) -> pd.DataFrame:
    """One row per patient, in the order of `context`: its context columns, `n_visits`, `span` (days from the
    first to the last visit), `interval_mean`, `interval_sd`, and for every lab `<lab>_<s>` for s in
    `LAB_SUMMARIES` (the slope in units per year by least squares over the measured visits; NaN where undefined)."""
    v, key = seqs.visits, seqs.key
    day = _numbers(v[seqs.index])
    frame = pd.DataFrame({key: v[key].to_numpy(), "_day": day})
    g = frame.groupby(key, sort=False)
    gap = g["_day"].diff()
    out = pd.DataFrame({"n_visits": g.size(), "span": g["_day"].max() - g["_day"].min(),
                        "interval_mean": gap.groupby(frame[key]).mean(),
                        "interval_sd": gap.groupby(frame[key]).std(ddof=0)})
    years = day / DAYS_PER_YEAR
    for lab in labs:
        x = _numbers(v[lab])
        seen = np.isfinite(x)
        part = pd.DataFrame({key: frame[key], "x": x, "t": np.where(seen, years, np.nan)})
        part["tx"], part["tt"] = part["t"] * part["x"], part["t"] ** 2
        m = part[seen].groupby(key, sort=False)
        n, st, sx, stx, stt = m.size(), m["t"].sum(), m["x"].sum(), m["tx"].sum(), m["tt"].sum()
        det = n * stt - st ** 2
        out[f"{lab}_first"] = m["x"].first()
        out[f"{lab}_last"] = m["x"].last()
        out[f"{lab}_mean"] = sx / n
        out[f"{lab}_sd"] = m["x"].std(ddof=0)
        out[f"{lab}_slope"] = ((n * stx - st * sx) / det).where(det > 1e-12)
        out[f"{lab}_missing"] = 1.0 - part.groupby(key, sort=False)["x"].count() / g.size()
    context = seqs.context.set_index(key)
    out = out.reindex(context.index)
    out["n_visits"] = out["n_visits"].fillna(0)
    return pd.concat([context, out], axis=1).reset_index(drop=True)


def numeric_ranges(train: Sequences, labs: list[str], comm: Communicator) -> tuple[list[str], np.ndarray]:
    """(the numeric summary columns, their (2, columns) min and max over every site's training patients)
    (collective)."""
    frame = summary(train, labs).drop(columns=categorical_context(train))
    x = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        low = np.where(np.isfinite(x).any(axis=0), np.nanmin(np.where(np.isfinite(x), x, np.inf), axis=0), np.inf)
        high = np.where(np.isfinite(x).any(axis=0), np.nanmax(np.where(np.isfinite(x), x, -np.inf), axis=0), -np.inf)
    low = comm.Allreduce(np.ascontiguousarray(low), "min")
    high = comm.Allreduce(np.ascontiguousarray(high), "max")
    return list(frame.columns), np.stack([low, high])


def distance_space(seqs: Sequences, labs: list[str], columns: list[str], ranges: np.ndarray,
                   levels: dict[str, list[str]]) -> np.ndarray:
    """The trajectories as float32 vectors: numeric summaries scaled by `ranges` (undefined ones at 0.5) and the
    categorical context one-hot over `levels`, divided by sqrt(2)."""
    frame = summary(seqs, labs)
    low, high = ranges
    width = np.where(np.isfinite(high - low) & (high > low), high - low, 1.0)
    x = (frame[columns].to_numpy(dtype=np.float64, na_value=np.nan) - np.where(np.isfinite(low), low, 0.0)) / width
    blocks = [np.where(np.isfinite(x), x, 0.5)]
    for column, labels in levels.items():
        codes = pd.Categorical(frame[column].astype("string"), categories=labels).codes
        blocks.append((codes[:, None] == np.arange(len(labels))[None, :]) / np.sqrt(2.0))
    return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)


def context_levels(frames: list[Sequences], comm: Communicator) -> dict[str, list[str]]:
    """{categorical context column: every level seen in `frames` on any site} (collective, small messages)."""
    mine = {c: sorted({str(v) for f in frames for v in f.context[c].dropna()}) for c in categorical_context(frames[0])}
    merged: dict[str, set[str]] = {c: set() for c in mine}
    for part in comm.allgather(mine):
        for c, values in part.items():
            merged.setdefault(c, set()).update(values)
    return {c: sorted(values) for c, values in merged.items()}


def site_distances(synthetic: Sequences, train: Sequences, holdout: Sequences, labs: list[str],
                   comm: Communicator, nearest: NeighbourSearch | None = None) -> Distances:
    """This site's trajectory distances: of every synthetic trajectory to its nearest and second-nearest
    training trajectory, and of every held-out one to its nearest (collective: the scaling is shared)."""
    columns, ranges = numeric_ranges(train, labs, comm)
    levels = context_levels([train, holdout, synthetic], comm)
    reference = distance_space(train, labs, columns, ranges, levels)
    nearest = nearest or NeighbourSearch()
    k = min(2, len(reference))
    d, _ = nearest(distance_space(synthetic, labs, columns, ranges, levels), reference, k=k)
    held = nearest(distance_space(holdout, labs, columns, ranges, levels), reference, k=1)[0][:, 0] \
        if holdout.n_patients else np.empty(0, dtype=np.float32)
    return Distances(d[:, 0], d[:, k - 1], held)


def fingerprints(seqs: Sequences) -> np.ndarray:
    """A digest of every patient's whole record (context without the key, then every visit's time and values,
    numbers to 6 significant digits), in the order of `context`: equal digests, equal trajectories."""
    def text(frame: pd.DataFrame) -> pd.Series:
        cells = [frame[c].map(lambda v: "nan" if pd.isna(v) else (f"{v:.6g}" if isinstance(v, (int, float, np.number))
                                                                   else str(v))) for c in frame.columns]
        return pd.concat(cells, axis=1).agg("|".join, axis=1) if cells else pd.Series("", index=frame.index)

    visits = text(seqs.visits.drop(columns=[seqs.key]))
    per_patient = visits.groupby(seqs.visits[seqs.key].to_numpy(), sort=False).agg(";".join)
    context = text(seqs.context.drop(columns=[seqs.key]))
    joined = context.to_numpy() + "#" + per_patient.reindex(seqs.context[seqs.key].to_numpy()).fillna("").to_numpy()
    return np.array([hashlib.sha1(s.encode()).hexdigest() for s in joined])


def exact_match_rate(synthetic: Sequences, train: Sequences, comm: Communicator | None = None) -> float:
    """The share of synthetic trajectories identical to some site's training patient (collective: one `Allreduce`
    of a 0/1 flag per synthetic patient, so only the release's own flags travel)."""
    mine = set(fingerprints(train))
    copied = np.array([f in mine for f in fingerprints(synthetic)], dtype=np.float64)
    copied = (comm or SoloComm()).Allreduce(copied, "max")
    return float(copied.mean()) if copied.size else float("nan")


def trajectory_privacy(synthetic: Sequences, train: Sequences, holdout: Sequences, labs: list[str],
                       comm: Communicator | None = None) -> dict[str, float]:
    """`trajectory_`-prefixed DCR and NNDR scores of the release against every site's training patients (held-out
    patients as the reference of a fresh patient's distance), the share at distance 0 in the summary space
    (`trajectory_summary_match_rate`) and the share of exact copies (`trajectory_exact_match_rate`), the same on
    every site (collective)."""
    comm = comm or SoloComm()
    gathered = comm.gather(site_distances(synthetic, train, holdout, labs, comm))
    scores = None
    if comm.is_root:
        scores = {f"trajectory_{k}": v for k, v in distance_scores(gathered).items()}
        scores["trajectory_summary_match_rate"] = scores.pop("trajectory_exact_match_rate")
    scores = comm.bcast(scores)
    scores["trajectory_exact_match_rate"] = exact_match_rate(synthetic, train, comm)
    return scores

