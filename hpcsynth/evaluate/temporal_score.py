"""Every temporal score of one release of sequences against the consortium's held-out patients, in one call.

`score_sequences` is collective: under MPI every rank passes the same synthetic sequences with its own site's
held-out (and, for the privacy scores, training) patients; the count-based scores equal those of the pooled
patients, the classifier scores are averaged over sites weighted by held-out patients and the distances are
gathered on rank 0, as each score's declaration in `hpcsynth.evaluate.temporal_metrics` says. In one process with
the default communicator it scores the patients it is given.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.data.sequences import Sequences
from hpcsynth.evaluate.temporal import (
    LAGS,
    TimeProfile,
    autocorrelation,
    falling_before_event,
    interval_similarity,
    labs_of,
    length_similarity,
    time_profiles,
    visit_marginals,
)
from hpcsynth.evaluate.temporal_detection import trajectory_detection
from hpcsynth.evaluate.temporal_metrics import TEMPORAL_METRICS
from hpcsynth.evaluate.temporal_tstr import next_visit_utility
from hpcsynth.evaluate.trajectories import trajectory_privacy


def _mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


@dataclass
class TemporalReport:
    """The temporal scores of one release and the parts the report draws.

    Parameters
    ----------
    scores : dict
        {score: value} for the names of `hpcsynth.evaluate.temporal_metrics.TEMPORAL` that could be computed.
    visit_shapes : dict
        {visit column: 1 - KS or 1 - TV} behind `visit_column_shapes`.
    autocorrelation : dict
        {(lab, lag): (real, synthetic)} within-patient autocorrelations behind `autocorr_lag<k>_gap`.
    falling : dict
        {lab: (real, synthetic)} shares of event onsets preceded by a falling lab behind `event_order_gap`.
    profiles : list of TimeProfile
        Each lab's mean and spread per bin of time since entry, real and synthetic.
    """

    scores: dict[str, float]
    visit_shapes: dict[str, float] = field(default_factory=dict)
    autocorrelation: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    falling: dict[str, tuple[float, float]] = field(default_factory=dict)
    profiles: list[TimeProfile] = field(default_factory=list)

    @property
    def directions(self) -> dict[str, str]:
        return {k: TEMPORAL_METRICS[k].direction for k in self.scores}


def temporal_report(real: Sequences, synthetic: Sequences, comm: Communicator | None = None, *,
                    train: Sequences | None = None, event: str | None = None, labs: list[str] | None = None,
                    ends: Mapping[str, Sequence] | None = None, seed: int = 0) -> TemporalReport:
    """Every temporal score with its parts (collective).

    Parameters
    ----------
    real : Sequences
        This site's held-out patients (its share of the judge).
    synthetic : Sequences
        The release, the same on every site.
    comm : Communicator, optional
        The sites (default: one process).
    train : Sequences, optional
        This site's training patients: TRTR trains on them and the privacy scores measure distances to them
        (without them TRTR is cross-fitted on the held-out patients and the privacy scores are left out).
    event : str, optional
        A 0/1 visit column whose first 1 is an event onset (e.g. progression), for `event_order_gap`.
    labs : list of str, optional
        The visit columns whose dynamics are scored (default: every numeric visit column but the event).
    ends : dict of str to list, optional
        {visit column: levels that end follow-up} (data.sequence.ends), for `visits_after_end`.
    seed : int
        Seed of the classifiers and the draws.
    """
    comm = comm or SoloComm()
    labs = labs if labs is not None else labs_of(real, event)
    report = TemporalReport({})
    s = report.scores
    report.visit_shapes = visit_marginals(real, synthetic, comm)
    s["visit_column_shapes"] = _mean(list(report.visit_shapes.values()))
    report.profiles = time_profiles(real, synthetic, labs, comm)
    s["lab_time_gap"] = _mean([p.gap() for p in report.profiles])
    for lag in LAGS:
        for lab in labs:
            report.autocorrelation[(lab, lag)] = (autocorrelation(real, lab, lag, comm),
                                                  autocorrelation(synthetic, lab, lag))
        s[f"autocorr_lag{lag}_gap"] = _mean([abs(r - y) for (_, k), (r, y) in report.autocorrelation.items()
                                             if k == lag])
    s["length_similarity"] = length_similarity(real, synthetic, comm)
    s["interval_similarity"] = interval_similarity(real, synthetic, comm)
    if event is not None:
        report.falling = {lab: (falling_before_event(real, event, lab, comm),
                                falling_before_event(synthetic, event, lab)) for lab in labs}
        s["event_order_gap"] = _mean([abs(r - y) for r, y in report.falling.values()])
    if ends:  # the release is the same on every site: its count needs no merging
        s["visits_after_end"] = float(len(synthetic.ended_early(ends)))
    s["trajectory_detection_auroc"] = trajectory_detection(real, synthetic, labs, comm, seed)
    s.update(next_visit_utility(real, synthetic, labs, comm, train, seed))
    if train is not None:
        s.update(trajectory_privacy(synthetic, train, real, labs, comm))
    return report


def score_sequences(real: Sequences, synthetic: Sequences, comm: Communicator | None = None, *,
                    train: Sequences | None = None, event: str | None = None, labs: list[str] | None = None,
                    ends: Mapping[str, Sequence] | None = None, seed: int = 0) -> dict[str, float]:
    """{score: value} of `temporal_report` (collective; the same arguments)."""
    return temporal_report(real, synthetic, comm, train=train, event=event, labs=labs, ends=ends,
                           seed=seed).scores
