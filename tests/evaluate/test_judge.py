"""The judge: a shared release is the sites' draws together; per-site releases are each scored alone against
the consortium's held-out rows, summarised by their mean and worst site; the own-site view is labelled apart."""
import numpy as np
import pandas as pd
import pytest

from hpcsynth.evaluate.judge import CONSORTIUM, ONE_SITE_ALONE, Judge, one_site_alone
from hpcsynth.evaluate.suite import EvalSpec, Evaluation

METRICS = ("quality", "detection_auroc")


def _judges(mds, comm, k):
    train, holdout, site, transformer = mds
    mine = site == k
    spec = EvalSpec.default(transformer)
    return Judge(train.iloc[k::3], holdout[mine].reset_index(drop=True), transformer, comm, spec, 3)


def test_one_site_alone_is_the_mean_and_the_worst_in_each_metrics_direction():
    each = [Evaluation(scores={"quality": q, "detection_auroc": d}) for q, d in ((0.9, 0.7), (0.7, 0.9), (0.8, 0.8))]
    summary = one_site_alone(each)
    assert summary.release == ONE_SITE_ALONE and summary.sites == [e.scores for e in each]
    assert summary.scores == pytest.approx({"quality": 0.8, "detection_auroc": 0.8})
    assert summary.worst == {"quality": 0.7, "detection_auroc": 0.9}
    assert summary.notes["figures"] == "site 1, the lowest quality"


def test_releases_are_judged_against_every_sites_held_out_rows(mds, noisy_synthetic, sites):
    tables = [noisy_synthetic.iloc[k::3].reset_index(drop=True) for k in range(3)]

    def work(comm, k):
        judge = _judges(mds, comm, k)
        shared, alone = judge.release(tables, False, METRICS), judge.release(tables, True, METRICS)
        pooled = judge.score(pd.concat(tables, ignore_index=True), METRICS)
        first = judge.score(tables[0], METRICS)
        return shared, alone, pooled, first, judge.own_site(tables, True, METRICS)

    shared, alone, pooled, first, own = sites(work, 3)[0]
    assert shared.release == CONSORTIUM and shared.scores["quality"] == pooled.scores["quality"]
    assert alone.release == ONE_SITE_ALONE and alone.sites[0]["quality"] == first.scores["quality"]
    assert alone.scores["quality"] == pytest.approx(np.mean([s["quality"] for s in alone.sites]))
    assert len(own) == 3 and own[0]["quality"] != alone.sites[0]["quality"]  # its own rows: another question
