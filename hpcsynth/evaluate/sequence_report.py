"""The HTML report of a longitudinal run or comparison: one self-contained file (figures embedded as base64 PNG),
as `hpcsynth.evaluate.report` writes for tables.

First the strategy table `hpcsynth run` printed (`sequence_table`); then per strategy every temporal score with its
direction, each site alone with the sites' mean and the worst site where every site releases its own patients,
and the three temporal figures of `hpcsynth.evaluate.temporal_figures`: spaghetti plots, each lab's mean and band
over time, and the histograms of visits per patient and days between visits.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hpcsynth.evaluate.metrics import METRICS
from hpcsynth.evaluate.report import STYLE
from hpcsynth.evaluate.temporal_metrics import SUMMARY, TEMPORAL_METRICS, sequence_table

QUESTION = ("Every score answers one question: how well does the released set of patients represent the "
            "consortium's pooled held-out patients? Directions say whether higher or lower is better.")
FIGURES = (("spaghetti", "spaghetti plots", "Trajectories, real and synthetic"),
           ("profiles", "lab profiles over time", "Each lab over time: mean and one standard deviation"),
           ("lengths_intervals", "lengths and intervals", "Visits per patient and days between visits"))


@dataclass
class SequenceSection:
    """One longitudinal run to report.

    Parameters
    ----------
    name : str
        The strategy (the section's title).
    scores : dict
        Its temporal scores as stored in `/evaluation` (one site alone: the sites' mean), with the job's
        `wall_s`.
    figures : dict
        {"spaghetti", "profiles", "lengths_intervals"}: PNG bytes (`temporal_figures`).
    worst : dict
        Where each site releases its own patients: the worst site's value of each score (empty otherwise).
    sites : list of dict
        Where each site releases its own patients: each site's scores alone (empty otherwise).
    """

    name: str
    scores: dict[str, float]
    figures: dict[str, bytes]
    worst: dict[str, float] = field(default_factory=dict)
    sites: list[dict[str, float]] = field(default_factory=list)

    @property
    def one_site_alone(self) -> bool:
        """Whether every site released its own patients, each judged alone."""
        return bool(self.sites)


def direction(name: str) -> str:
    """"higher" or "lower" (is better) for a temporal score or a registry score such as wall_s; "" if neither
    declares it."""
    declared = TEMPORAL_METRICS.get(name) or METRICS.get(name)
    return declared.direction if declared is not None else ""


def image(data: bytes, alt: str) -> str:
    """An <img> carrying PNG bytes inline."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def _frame_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda x: f"{x:.4f}", border=0, na_rep="")


def scores_html(scores: dict[str, float]) -> str:
    """Every score with its value and direction, the declared temporal scores first in their order."""
    names = [k for k in TEMPORAL_METRICS if k in scores] + [k for k in scores if k not in TEMPORAL_METRICS]
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{scores[k]:.4f}</td><td>{direction(k)} is better</td></tr>"
                   for k in names)
    return f"<table><tr><th>score</th><th>value</th><th>direction</th></tr>{rows}</table>"


def sites_html(section: SequenceSection) -> str:
    """The summary scores of each site's release alone, the sites' mean and the worst site."""
    rows = [{"release": f"site {k} alone", **s} for k, s in enumerate(section.sites)]
    rows += [{"release": "mean", **section.scores}, {"release": "worst", **section.worst}]
    return ("<p class='note'>Every site keeps its own model, so what a site can release is its own patients: each "
            "site's release is scored alone against the consortium's pooled held-out patients.</p>"
            + _frame_html(pd.DataFrame(rows).reindex(columns=["release", *SUMMARY])))


def section_html(section: SequenceSection, real_shown: str) -> str:
    release = ("one site alone (each site's own patients; the scores are the sites' mean, the figures draw "
               "every site's release together)" if section.one_site_alone
               else "the consortium's one generator (every site's draws together)")
    parts = [f"<h2>{html.escape(section.name)}</h2>", f"<p class='note'>Release: {html.escape(release)}.</p>",
             "<h3>Scores</h3>", scores_html(section.scores)]
    if section.one_site_alone:
        parts += ["<h3>Each site alone</h3>", sites_html(section)]
    for key, alt, title in FIGURES:
        parts.append(f"<h3>{html.escape(title)}</h3>")
        if key == "spaghetti":
            parts.append(f"<p class='note'>Real trajectories: {html.escape(real_shown)}. Synthetic: patients of the "
                         "release drawn at random.</p>")
        parts.append(image(section.figures[key], alt))
    return "\n".join(parts)


def write_sequence_report(path: str | Path, sections: list[SequenceSection], title: str, real_shown: str) -> Path:
    """Write the self-contained HTML report of a longitudinal run or strategy comparison.

    Parameters
    ----------
    path : str or Path
        The HTML file to write (its folder is created).
    sections : list of SequenceSection
        Every strategy, in the job's order.
    title : str
        The page's title.
    real_shown : str
        Which real patients the spaghetti plots draw (individual trajectories; said in the report).
    """
    table = sequence_table({s.name: s.scores for s in sections})
    body = [f"<h1>{html.escape(title)}</h1>", f"<p class='note'>{QUESTION}</p>",
            "<h2>Strategy comparison</h2>", f"<pre>{html.escape(table)}</pre>"]
    body += [section_html(s, real_shown) for s in sections]
    text = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
