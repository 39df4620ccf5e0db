"""The one question every table of the project answers: how well does the released table represent the
consortium's population?

The judge is the pooled held-out rows of every site, never moved: each site holds its share, counts are merged
exactly and the scores that need rows are weighted by each site's held-out rows (`hpcsynth.evaluate.pooling`).
What is released depends on the strategy: where the sites end with one generator (centralized, FedAvg, ...),
the release is that generator's table (the sites' draws together). Where every site keeps its own model
(isolated), the honest release is one site's own table: each is judged alone against the population, and the
run's figure is their mean, with the worst site beside it ("one site alone"). Pooling the isolated sites'
samples would be a different strategy (synthetic-data sharing without its second phase) and is never reported
under `isolated`.

`own_site` keeps the other question available, labelled as such: does the release serve each hospital, judged
against that site's own held-out rows only.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.metrics import metric
from hpcsynth.evaluate.suite import EvalSpec, Evaluation, evaluate

CONSORTIUM = "consortium"
ONE_SITE_ALONE = "one site alone"


@dataclass
class Judge:
    """This site's share of the consortium's held-out rows and how releases are scored against them.

    Parameters
    ----------
    train, holdout : DataFrame
        This site's training rows (for the privacy scores) and held-out rows (its share of the judge).
    transformer : TableTransformer
        The exact scoring transform, fitted from merged statistics of every site's training rows.
    comm : Communicator
        The sites (one rank or one thread each); every method is collective.
    spec : EvalSpec
        The columns each part of the evaluation uses.
    n_sites : int
        The number of sites.
    site : ndarray, optional
        The site of every held-out row (default: this rank).
    memo : dict, optional
        What the evaluation fits on the real rows alone, kept from one release to the next.
    """

    train: pd.DataFrame
    holdout: pd.DataFrame
    transformer: TableTransformer
    comm: Communicator
    spec: EvalSpec
    n_sites: int
    site: np.ndarray | None = None
    memo: dict = field(default_factory=dict, repr=False)  # fits on the real rows, computed once per judge

    def score(self, synthetic: pd.DataFrame, metrics: Collection[str] | None = None,
              comm: Communicator | None = None) -> Evaluation:
        """One table against the pooled held-out rows (against this site's own with `comm=SoloComm()`)."""
        return evaluate(synthetic, self.train, self.holdout, self.transformer, comm or self.comm, self.spec,
                        self.site, self.n_sites, metrics, self.memo if comm is None else None)

    def release(self, tables: list[pd.DataFrame], per_site: bool,
                metrics: Collection[str] | None = None) -> Evaluation:
        """The run's release scored against the population: the sites' draws together when they share one
        generator, else each site's own table alone, summarised by their mean and worst."""
        if not per_site:
            return self.score(pd.concat(tables, ignore_index=True), metrics)
        return one_site_alone([self.score(t, metrics) for t in tables])

    def own_site(self, tables: list[pd.DataFrame], per_site: bool,
                 metrics: Collection[str] | None = None) -> list[dict[str, float]] | None:
        """Each site's release scored against that site's own held-out rows only; every site's scores on rank 0
        (None elsewhere)."""
        mine = tables[self.comm.rank] if per_site else pd.concat(tables, ignore_index=True)
        return self.comm.gather(self.score(mine, metrics, SoloComm()).scores)


def one_site_alone(each: list[Evaluation]) -> Evaluation:
    """The figures of per-site releases: the scores are the sites' mean, `worst` the worst site's value of
    every score, `sites` each site's; the drawn parts are those of the site with the lowest quality."""
    keys = list(each[0].scores)
    table = pd.DataFrame([e.scores for e in each], columns=keys)
    worst = {k: float(table[k].min() if metric(k).direction == "higher" else table[k].max()) for k in keys}
    shown = each[int(np.nanargmin([e.scores.get("quality", np.nan) for e in each]))] \
        if any(np.isfinite(e.scores.get("quality", np.nan)) for e in each) else each[0]
    result = Evaluation(**{**vars(shown), "scores": {k: float(table[k].mean()) for k in keys}})
    result.release, result.sites, result.worst = ONE_SITE_ALONE, [e.scores for e in each], worst
    result.notes = {**shown.notes, "figures": f"site {each.index(shown)}, the lowest quality"}
    return result
