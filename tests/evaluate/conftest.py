"""Shared fixtures: K sites as K threads of one process (so federated sums are tested cheaply), a small MDS
cohort and a stand-in synthetic table."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from hpcsynth.comm import Communicator, SitesInOneProcess


@pytest.fixture
def sites():
    """Run `work(comm, k)` on K in-process sites (`hpcsynth.comm.SitesInOneProcess`); their results in rank
    order."""

    def run(work: Callable[[Communicator, int], Any], size: int) -> list:
        return SitesInOneProcess(size).run(lambda comm: work(comm, comm.rank))

    return run


@pytest.fixture(scope="session")
def mds():
    """A small MDS cohort split into training and held-out rows, with its scoring transform."""
    from hpcsynth.data.mds import simulate_mds
    from hpcsynth.data.transformer import TableTransformer

    frame = simulate_mds(n_patients=600, n_sites=3, seed=1).drop(columns=["patient_id"])
    site = frame.pop("site").to_numpy()
    held = np.random.default_rng(0).random(len(frame)) < 0.3
    train, holdout = frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)
    transformer = TableTransformer(["sex", "cyto_risk", "ipssr_category"], "os_months", "os_event").fit(train)
    return train, holdout, site[held], transformer


@pytest.fixture(scope="session")
def noisy_synthetic(mds):
    """A stand-in synthetic table: training rows resampled with jittered numbers (no generator needed)."""
    train, _, _, _ = mds
    rng = np.random.default_rng(5)
    frame = train.sample(len(train), replace=True, random_state=5).reset_index(drop=True)
    for column in ("age", "hb", "os_months"):
        frame[column] = np.abs(frame[column] * rng.normal(1.0, 0.1, len(frame)))
    return frame
