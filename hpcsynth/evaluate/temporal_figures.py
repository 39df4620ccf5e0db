"""The temporal section's figures: spaghetti plots of real and synthetic trajectories, each lab's mean +- one
standard deviation over time since entry, and the histograms of sequence lengths and visit intervals.

Drawn with matplotlib's Agg backend and returned as figures or PNG bytes, which the HTML report embeds as it does
its other plots (base64 in an <img>). The bands and the histograms come from counts merged over sites (the band
from `hpcsynth.evaluate.temporal.TimeProfile`, the histograms by one `Allreduce`), so they draw the consortium's
held-out patients; the spaghetti plot draws individual patients and is given the real sequences of one site (the
caller decides which may be shown).
"""
from __future__ import annotations

import io

import numpy as np

from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.data.sequences import Sequences
from hpcsynth.evaluate.pooling import summed
from hpcsynth.evaluate.temporal import TimeProfile, as_numbers, comm_max, intervals

REAL, SYNTHETIC = "#1f4e79", "#d95f02"
N_INTERVAL_BINS = 30


def _figure(rows: int, cols: int, width: float = 3.6, height: float = 2.7):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)


def png(fig) -> bytes:
    """The figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def spaghetti_figure(real: Sequences, synthetic: Sequences, labs: list[str], n_patients: int = 20, seed: int = 0):
    """One row per lab, real and synthetic side by side: the trajectories of `n_patients` patients drawn at random
    from each, value against days since entry (a missing value leaves a gap in the line)."""
    fig, axes = _figure(len(labs), 2)
    rng = np.random.default_rng(seed)
    for column, (seqs, colour, title) in enumerate(((real, REAL, "real"), (synthetic, SYNTHETIC, "synthetic"))):
        keys = seqs.context[seqs.key].to_numpy()
        shown = set(rng.choice(keys, min(n_patients, keys.size), replace=False).tolist()) if keys.size else set()
        visits = seqs.visits[seqs.visits[seqs.key].isin(shown)]
        for row, lab in enumerate(labs):
            ax = axes[row, column]
            for _, patient in visits.groupby(seqs.key, sort=False):
                ax.plot(as_numbers(patient[seqs.index]), as_numbers(patient[lab]), color=colour, alpha=0.5, lw=0.9,
                        marker=".", ms=3)
            ax.set_title(f"{lab}: {title}", fontsize=9)
            ax.set_xlabel("days since entry", fontsize=8)
    for row in range(len(labs)):  # the same value axis for real and synthetic
        low = min(axes[row, c].get_ylim()[0] for c in range(2))
        high = max(axes[row, c].get_ylim()[1] for c in range(2))
        for c in range(2):
            axes[row, c].set_ylim(low, high)
    fig.tight_layout()
    return fig


def profile_figure(profiles: list[TimeProfile]):
    """Each lab's mean per bin of time since entry with a band of one standard deviation, real and synthetic."""
    fig, axes = _figure(1, max(len(profiles), 1))
    for ax, p in zip(axes.flat, profiles):
        centres = (p.edges[:-1] + p.edges[1:]) / 2
        for moments, colour, label in ((p.real, REAL, "real"), (p.synthetic, SYNTHETIC, "synthetic")):
            _, mean, sd = moments
            ax.plot(centres, mean, color=colour, marker="o", ms=3, label=label)
            ax.fill_between(centres, mean - sd, mean + sd, color=colour, alpha=0.2)
        ax.set_title(p.lab, fontsize=9)
        ax.set_xlabel("days since entry", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def length_interval_counts(real: Sequences, synthetic: Sequences,
                           comm: Communicator | None = None) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{"length", "interval"}: (bin edges, real counts summed over sites, synthetic counts) on edges shared by
    every site: one bin per number of visits, `N_INTERVAL_BINS` equal bins of days up to the longest interval of
    either side (collective)."""
    comm = comm or SoloComm()
    lengths = (real.lengths().to_numpy(float), synthetic.lengths().to_numpy(float))
    gaps = (intervals(real), intervals(synthetic))
    longest = comm_max(max([float(x.max()) for x in lengths if x.size] or [1.0]), comm)
    widest = comm_max(max([float(x.max()) for x in gaps if x.size] or [1.0]), comm)
    edges = {"length": np.arange(0.5, longest + 1.5), "interval": np.linspace(0.0, max(widest, 1.0),
                                                                              N_INTERVAL_BINS + 1)}
    out = {}
    for name, (r, s) in (("length", lengths), ("interval", gaps)):
        e = edges[name]
        out[name] = (e, summed(np.histogram(r, e)[0].astype(float), comm), np.histogram(s, e)[0].astype(float))
    return out


def length_interval_figure(counts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]):
    """The histograms of `length_interval_counts` as shares, real and synthetic overlaid."""
    fig, axes = _figure(1, 2)
    for ax, (name, (edges, real, syn)) in zip(axes.flat, counts.items()):
        centres = (edges[:-1] + edges[1:]) / 2
        for values, colour, label, style in ((real, REAL, "real", "-"), (syn, SYNTHETIC, "synthetic", "--")):
            ax.step(centres, values / max(values.sum(), 1.0), where="mid", color=colour, linestyle=style, label=label)
        ax.set_title("visits per patient" if name == "length" else "days between visits", fontsize=9)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def temporal_figures(real: Sequences, synthetic: Sequences, profiles: list[TimeProfile], labs: list[str],
                     comm: Communicator | None = None, shown: Sequences | None = None,
                     seed: int = 0) -> dict[str, bytes]:
    """{"spaghetti", "profiles", "lengths_intervals"}: PNG bytes of the three figures (collective for the
    histograms). `profiles`: `TemporalReport.profiles`; `shown`: the real patients the spaghetti plot may draw
    (default: `real`, this site's held-out patients)."""
    counts = length_interval_counts(real, synthetic, comm)
    return {"spaghetti": png(spaghetti_figure(shown if shown is not None else real, synthetic, labs, seed=seed)),
            "profiles": png(profile_figure(profiles)),
            "lengths_intervals": png(length_interval_figure(counts))}
