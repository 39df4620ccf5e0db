"""A stored run judged by a release policy: the scores of the table to be released and the privacy spent, read
from the run file, so that `hpcsynth release` (which refuses) and `hpcsynth export` (which warns) judge alike.

The scores judged are those of the table that leaves: one site's table is judged by that site's own scores when
the run has a release per site; the pooled table by every score at its worst site (a pooled table holds every
site's rows), or by the consortium's scores when the sites share one generator.
"""
from __future__ import annotations

import h5py

from hpcsynth.evaluate.policy import Outcome, Policy, evidence
from hpcsynth.io.evaluation import read_evaluation


def table_scores(run: h5py.Group, site: int | None = None) -> dict[str, float]:
    """The stored scores of the pooled table, or of site `site`'s (empty when the run was never scored)."""
    stored = read_evaluation(run)
    if stored is None:
        return {}
    if site is not None and 0 <= site < len(stored.sites):
        return {k: float(v) for k, v in stored.sites[site].items()}
    return {**stored.scores, **{k: float(v) for k, v in stored.worst.items()}}


def judge(run: h5py.Group, policy: Policy, site: int | None = None) -> list[Outcome]:
    """Every check of `policy` on the table a release of `run` (pooled, or site `site`'s) would hold."""
    privacy = dict(run["privacy"].attrs) if "privacy" in run else {}
    return policy.judge(evidence(table_scores(run, site), privacy))
