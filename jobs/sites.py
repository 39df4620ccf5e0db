"""What every job does with the sites' rows: load this site's rows on every rank, agreeing on failure, and
summarise how far each site is from the pooled data (from histograms, never rows)."""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from hpcsynth.comm import Communicator
from hpcsynth.data.schema import DataError
from hpcsynth.data.shift import ShiftReport, column_counts
from hpcsynth.data.sources import SiteData
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.messages import ConfigError


def agree(load: Callable[[], SiteData], comm: Communicator) -> SiteData:
    """Load this site's data, then learn whether every site could (collective): a bad file at one site, or the
    same problem at every site, becomes one message reported once (by rank 0, naming the first failing site)."""
    site, problem = None, None
    try:
        site = load()
    except (DataError, ConfigError) as err:
        problem = str(err)
    problems = [(rank, p) for rank, p in enumerate(comm.allgather(problem)) if p]
    if problems:
        rank, message = problems[0]
        where = f"rank {rank}: " if comm.size > 1 else ""
        more = f" (and {len(problems) - 1} other sites)" if len(problems) > 1 else ""
        raise DataError(f"{where}{message}{more}", everywhere=True)
    return site


def shift_report(train: pd.DataFrame, transformer: TableTransformer, label: str | None,
                 comm: Communicator) -> ShiftReport | None:
    """The report on rank 0 (None elsewhere), from every site's histograms (collective)."""
    gathered = comm.gather(column_counts(train, transformer))
    if gathered is None:
        return None
    return ShiftReport.from_counts(transformer.columns, gathered, label)
