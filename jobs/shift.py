"""The shift-diagnostics job (`hpcsynth shift CONFIG.yaml`): how far each site is from the pooled data.

Under `mpiexec -n K` each rank loads only its site and sends only histograms; in one process the sites are
loaded in turn (a study on one machine that holds every site's file anyway). Rank 0 prints the table and the
one-line reading and writes them, with the config and the shared schema, into a run file of kind `shift`.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from hpcsynth.comm import Communicator
from hpcsynth.config import RunConfig
from hpcsynth.data.shift import ShiftReport, column_counts
from hpcsynth.data.sources import count_sites, load_site
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.io.runfile import write_shift
from hpcsynth.jobs.sites import agree, shift_report


def _one_process(cfg: RunConfig) -> tuple[ShiftReport, TableTransformer]:
    n_sites = count_sites(cfg.data)
    sites = [load_site(cfg.data, k if n_sites > 1 else None, n_sites, cfg.seed) for k in range(n_sites)]
    d = sites[0].declared
    pooled = pd.concat([s.train for s in sites], ignore_index=True)
    transformer = TableTransformer.declared(d).fit(pooled)
    counts = [column_counts(s.train, transformer) for s in sites]
    return ShiftReport.from_counts(transformer.columns, counts, d.target or d.event), transformer


def main(cfg: RunConfig, comm: Communicator, out: str | None = None) -> ShiftReport | None:
    """Measure the shift; rank 0 prints and writes it (to `out`, default `<output stem>-shift.h5`)."""
    if comm.size > 1:
        site = agree(lambda: load_site(cfg.data, comm.rank, comm.size, cfg.seed), comm)
        d = site.declared
        transformer = TableTransformer.declared(d).fit(site.train, comm)
        report = shift_report(site.train, transformer, d.target or d.event, comm)
    else:
        report, transformer = _one_process(cfg)
    if report is None:
        return None
    print(report.table().round(3).to_string(index=False))
    print(report.reading())
    path = Path(out) if out else Path(cfg.output).with_name(Path(cfg.output).stem + "-shift.h5")
    write_shift(path, cfg.text, cfg.source, transformer, report)
    print(f"shift diagnostics: {path}")
    return report
