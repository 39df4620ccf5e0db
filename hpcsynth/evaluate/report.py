"""The HTML report: one self-contained file (plots embedded as base64 PNG), readable offline and mailable.

Sections per run: the scores with their directions, marginals real against synthetic, Kaplan-Meier curves
(overall and per risk group), the correlation difference heat map, gene frequencies, the privacy attacks
(Anonymeter's risks with their bounds, the membership attacks), DCR histograms, fairness
by subgroup, and the per-round curves of the federated training from `/rounds`; for a comparison file, first a
strategy comparison of the headline scores. Plots are drawn with matplotlib's Agg backend (no display needed).
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hpcsynth.evaluate.judge import ONE_SITE_ALONE
from hpcsynth.evaluate.metrics import headline, metric
from hpcsynth.evaluate.suite import Evaluation

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:0.9em}td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:100%;display:block;margin:0.5em 0}
h2{border-bottom:2px solid #345;padding-bottom:4px;margin-top:2em}.note{color:#555}"""


@dataclass
class RunSection:
    """One run to report.

    Parameters
    ----------
    name : str
        The strategy (the section's title).
    evaluation : Evaluation
        Its scores and the parts the report draws.
    rounds : DataFrame or None
        The run file's `/rounds` table, for the training curves.
    """

    name: str
    evaluation: Evaluation
    rounds: pd.DataFrame | None = None


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(fig, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}">'


def _figure(rows: int, cols: int, width: float = 3.4, height: float = 2.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    return fig, axes


def marginals_figure(ev: Evaluation, limit: int = 12):
    shown = ev.marginals[:limit]
    cols = 4
    fig, axes = _figure((len(shown) + cols - 1) // cols, cols)
    for ax, m in zip(axes.flat, shown):
        real, syn = m.real / max(m.real.sum(), 1), m.synthetic / max(m.synthetic.sum(), 1)
        if m.edges is not None:
            centres = (m.edges[:-1] + m.edges[1:]) / 2
            ax.step(centres, real, where="mid", label="real", color="#1f4e79")
            ax.step(centres, syn, where="mid", label="synthetic", color="#d95f02", linestyle="--")
        else:
            x = np.arange(len(m.labels))
            ax.bar(x - 0.2, real, 0.4, label="real", color="#1f4e79")
            ax.bar(x + 0.2, syn, 0.4, label="synthetic", color="#d95f02")
            ax.set_xticks(x, [label[:8] for label in m.labels], rotation=45, fontsize=7)
        ax.set_title(f"{m.name} (shape {ev.shapes.get(m.name, np.nan):.3f})", fontsize=9)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def km_figure(ev: Evaluation):
    km = ev.km
    groups = [g for g in km.real if g in km.synthetic]
    fig, axes = _figure(1, len(groups), 3.2, 2.8)
    for ax, g in zip(axes.flat, groups):
        ax.step(km.grid, km.real[g], where="post", color="#1f4e79", label="real")
        ax.step(km.grid, km.synthetic[g], where="post", color="#d95f02", linestyle="--", label="synthetic")
        if g in km.read_until:  # the gap is read up to here: beyond, fewer than a tenth of the real rows remain
            ax.axvline(km.read_until[g], color="grey", linewidth=0.6, linestyle=":", label="gap read up to")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{g} (n={km.sizes[g]:.0f}): gap {km.gaps[g]:.3f}", fontsize=9)
        ax.set_xlabel("time", fontsize=8)
    axes.flat[0].set_ylabel("survival")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def correlation_figure(ev: Evaluation):
    p = ev.pairs
    diff = np.nan_to_num(p.synthetic_corr - p.real_corr)
    fig, axes = _figure(1, 1, 7.5, 6.5)
    ax = axes[0, 0]
    image = ax.imshow(diff, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(p.columns)), p.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(len(p.columns)), p.columns, fontsize=7)
    ax.set_title("Pearson correlation, synthetic - real", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def genes_figure(ev: Evaluation):
    g = ev.genomics
    fig, axes = _figure(1, 2, 5.5, 3.0)
    x = np.arange(len(g.genes))
    axes[0, 0].bar(x - 0.2, g.real_freq, 0.4, label="real", color="#1f4e79")
    axes[0, 0].bar(x + 0.2, g.synthetic_freq, 0.4, label="synthetic", color="#d95f02")
    axes[0, 0].set_xticks(x, g.genes, rotation=90, fontsize=7)
    axes[0, 0].set_title("mutation frequency", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    significant = g.real_p < 0.05
    axes[0, 1].scatter(g.real_log_or[~significant], g.synthetic_log_or[~significant], s=6, color="#aaa")
    axes[0, 1].scatter(g.real_log_or[significant], g.synthetic_log_or[significant], s=10, color="#d95f02",
                       label="significant in real (p<0.05)")
    lim = max(1.0, float(np.nanmax(np.abs(np.r_[g.real_log_or, g.synthetic_log_or]))))
    axes[0, 1].plot([-lim, lim], [-lim, lim], color="#444", linewidth=0.8)
    axes[0, 1].set_xlabel("real log odds ratio", fontsize=8)
    axes[0, 1].set_ylabel("synthetic log odds ratio", fontsize=8)
    axes[0, 1].set_title("co-occurrence (>0) / exclusivity (<0)", fontsize=9)
    axes[0, 1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def dcr_figure(ev: Evaluation):
    syn = np.concatenate([d.synthetic for d in ev.distances]).astype(float)
    held = np.concatenate([d.holdout for d in ev.distances]).astype(float)
    fig, axes = _figure(1, 1, 6.0, 3.0)
    ax = axes[0, 0]
    bins = np.linspace(0, np.percentile(np.r_[syn, held], 99) if held.size else syn.max(), 40)
    ax.hist(held, bins=bins, density=True, alpha=0.6, color="#1f4e79", label="held-out to training")
    ax.hist(syn, bins=bins, density=True, alpha=0.6, color="#d95f02", label="synthetic to training")
    ax.set_xlabel("distance to closest training row", fontsize=8)
    ax.legend(fontsize=7)
    return fig


def fairness_figure(ev: Evaluation):
    f = ev.fairness
    names = list(f.fidelity)
    labels = [f"{n} (n={f.rows.get(n, 0):.0f})" for n in names]
    fig, axes = _figure(1, 2, 5.0, 3.0)
    for ax, (title, table) in zip(axes.flat, (("fidelity", f.fidelity), ("TSTR AUROC", f.utility))):
        ax.barh(labels, [table.get(n, np.nan) for n in names], color="#1f4e79")
        ax.set_title(f"{title} by subgroup", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def rounds_figure(rounds: pd.DataFrame):
    shown = [c for c in ("loss", "wall_s", "comm_s", "eval_s", "epsilon") if c in rounds and rounds[c].notna().any()]
    fig, axes = _figure(1, len(shown), 3.2, 2.5)
    for ax, column in zip(axes.flat, shown):
        ax.plot(rounds["round"] + 1, rounds[column], marker="o", markersize=3, color="#1f4e79")
        ax.set_title(column, fontsize=9)
        ax.set_xlabel("round", fontsize=8)
    fig.tight_layout()
    return fig


ROUND_CURVES = ("quality", "csf", "gsf")


def round_scores(rounds: pd.DataFrame | None, key: str) -> pd.DataFrame:
    """(round from 1, score) of the rounds where `key` was evaluated."""
    if rounds is None or key not in rounds:
        return pd.DataFrame({"round": [], key: []})
    kept = rounds[rounds[key].notna()]
    return pd.DataFrame({"round": kept["round"].to_numpy() + 1, key: kept[key].to_numpy()})


def round_curves_figure(sections: list[RunSection]):
    """Quality, CSF and GSF of every strategy's release against the round: the federated study's figure."""
    keys = [k for k in ROUND_CURVES if any(len(round_scores(s.rounds, k)) for s in sections)]
    fig, axes = _figure(1, len(keys), 3.6, 2.8)
    for ax, key in zip(axes.flat, keys):
        for section in sections:
            points = round_scores(section.rounds, key)
            if len(points):
                ax.plot(points["round"], points[key], marker="o", markersize=3, label=section.name)
        ax.set_title(f"{key} {metric(key).sign} against the round", fontsize=9)
        ax.set_xlabel("round", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def has_round_curves(sections: list[RunSection]) -> bool:
    return any(len(round_scores(s.rounds, k)) for s in sections for k in ROUND_CURVES)


def comparison_figure(sections: list[RunSection]):
    keys = [k for k in headline() if any(k in s.evaluation.scores for s in sections)]
    fig, axes = _figure(1, 1, 1.3 * len(keys) + 2, 3.2)
    ax = axes[0, 0]
    width = 0.8 / len(sections)
    for k, section in enumerate(sections):
        values = [section.evaluation.scores.get(key, np.nan) for key in keys]
        ax.bar(np.arange(len(keys)) + k * width, values, width, label=section.name)
    labels = [f"{k} {metric(k).sign}" for k in keys]
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, labels, fontsize=8, rotation=20)
    ax.legend(fontsize=8)
    ax.set_title("strategies compared (+ higher / - lower is better)", fontsize=9)
    return fig


def _scores_table(ev: Evaluation) -> str:
    directions = ev.directions
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td><td>{directions[k]} is better</td></tr>"
                   for k, v in ev.scores.items())
    notes = "".join(f"<li>{html.escape(k)}: <b>{html.escape(str(v))}</b></li>" for k, v in ev.notes.items())
    return f"<table><tr><th>score</th><th>value</th><th>direction</th></tr>{rows}</table><ul>{notes}</ul>"


ANONYMETER = ("singling_out_risk", "linkability_risk", "inference_risk")
MEMBERSHIP = ("membership_auroc", "domias_auroc", "whitebox_membership_auroc")


def attacks_frame(ev: Evaluation) -> pd.DataFrame:
    """Anonymeter's risks with their upper 95% bounds, then the two membership attacks side by side (the rows the
    evaluation has)."""
    rows = [{"attack": k, "value": ev.scores[k], "95% upper bound": ev.scores.get(f"{k}_ci_high", np.nan)}
            for k in ANONYMETER if k in ev.scores]
    rows += [{"attack": k, "value": ev.scores[k], "95% upper bound": np.nan} for k in MEMBERSHIP if k in ev.scores]
    return pd.DataFrame(rows, columns=["attack", "value", "95% upper bound"])


def attacks_html(ev: Evaluation) -> str:
    """The report's table of the privacy attacks (`attacks_frame`), with how to read it."""
    return ("<p class='note'>Anonymeter's risks are the attack's success on training rows beyond its success on "
            "held-out rows (0: none); the release policy bounds the upper end of their interval. Membership AUROCs: "
            "0.5 is chance; the distance attack and the density-ratio (DOMIAS) attack on the rows, the white-box "
            "loss attack on the weights the release never ships.</p>"
            + _frame_html(attacks_frame(ev)))


def _cox_table(ev: Evaluation) -> str:
    c = ev.cox
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{np.exp(r):.3f}</td><td>{np.exp(r - 1.96 * s):.3f}-"
                   f"{np.exp(r + 1.96 * s):.3f}</td><td>{np.exp(y):.3f}</td></tr>"
                   for n, r, s, y in zip(c.covariates, c.real_log_hr, c.real_se, c.synthetic_log_hr))
    return ("<table><tr><th>covariate</th><th>HR real</th><th>95% CI real</th><th>HR synthetic</th></tr>"
            f"{rows}</table>")


def _frame_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda x: f"{x:.4f}", border=0, na_rep="")


def sites_frame(ev: Evaluation, own_site: bool = False) -> pd.DataFrame:
    """The headline scores of every site's release alone against the population, then their mean and the worst
    site; with `own_site`, every site's release against that site's own held-out rows instead."""
    keys = [k for k in headline() if k in ev.scores]
    if own_site:
        return pd.DataFrame([{"site": k, **{key: s.get(key, np.nan) for key in keys}}
                             for k, s in enumerate(ev.own_site)], columns=["site", *keys])
    rows = [{"release": f"site {k} alone", **s} for k, s in enumerate(ev.sites)]
    rows += [{"release": "mean", **ev.scores}, {"release": "worst", **ev.worst}]
    return pd.DataFrame(rows).reindex(columns=["release", *keys])


def _sites_html(ev: Evaluation) -> str:
    return (f"<p class='note'>Every site keeps its own model, so what a site can release is its own table: each "
            f"is scored alone against the consortium's pooled held-out rows. Figures below: "
            f"{html.escape(ev.notes.get('figures', ''))}.</p>" + _frame_html(sites_frame(ev)))


def _own_site_html(ev: Evaluation) -> str:
    return (f"<p class='note'>{OWN_SITE}</p>" + _frame_html(sites_frame(ev, own_site=True)))


def _detection_html(sections: list[RunSection]) -> str:
    """Every strategy's detection AUROC and the columns its classifier leans on most."""
    rows = [{"strategy": s.name, "detection_auroc": s.evaluation.scores.get("detection_auroc", np.nan),
             "top features (drop in AUROC when the column is shuffled)":
                 ", ".join(f"{c} {v:.3f}" for c, v in s.evaluation.detection_features.items())} for s in sections]
    return _frame_html(pd.DataFrame(rows))


def run_html(section: RunSection) -> str:
    ev = section.evaluation
    parts = [f"<h2>{html.escape(section.name)}</h2>", f"<p class='note'>Release: {html.escape(_release(ev))}.</p>",
             "<h3>Scores</h3>", _scores_table(ev)]
    if ev.sites:
        parts += ["<h3>Each site alone</h3>", _sites_html(ev)]
    if ev.own_site:
        parts += ["<h3>Each site against its own held-out rows</h3>", _own_site_html(ev)]
    parts += ["<h3>Marginals</h3>", _img(marginals_figure(ev), "marginals")]
    if ev.km is not None and ev.km.real:
        parts += ["<h3>Kaplan-Meier, real and synthetic</h3>", _img(km_figure(ev), "kaplan-meier")]
    if ev.cox is not None:
        parts += ["<h3>Cox hazard ratios</h3>", _cox_table(ev)]
    parts += ["<h3>Correlation difference</h3>", _img(correlation_figure(ev), "correlation difference")]
    if ev.genomics is not None:
        parts += ["<h3>Genomics</h3>", _img(genes_figure(ev), "genomics")]
    if any(k in ev.scores for k in ANONYMETER + MEMBERSHIP):
        parts += ["<h3>Privacy attacks</h3>", attacks_html(ev)]
    if ev.distances:
        parts += ["<h3>Distance to closest record</h3>", _img(dcr_figure(ev), "dcr histograms")]
    if ev.fairness is not None:
        parts += ["<h3>Fairness</h3>", _img(fairness_figure(ev), "fairness")]
    if section.rounds is not None and len(section.rounds):
        parts += ["<h3>Training rounds</h3>", _img(rounds_figure(section.rounds), "rounds")]
    if has_round_curves([section]):
        parts += ["<h3>Scores against the round</h3>", _img(round_curves_figure([section]), "scores per round")]
    return "\n".join(parts)


def write_report(path: str | Path, sections: list[RunSection], title: str) -> Path:
    """Write the self-contained HTML report of one run or of a strategy comparison."""
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="note">{QUESTION} Directions say whether higher or lower is better; CSF and GSF are defined '
            'in docs/composites.md.</p>']
    if len(sections) > 1:
        body += ["<h2>Strategy comparison</h2>", f"<pre>{html.escape(summary_table(sections))}</pre>",
                 _img(comparison_figure(sections), "strategy comparison")]
        if has_round_curves(sections):
            body += ["<h3>Scores against the round</h3>",
                     _img(round_curves_figure(sections), "strategies against the round")]
        body += ["<h3>What gives the synthetic rows away</h3>", _detection_html(sections)]
    body += [run_html(s) for s in sections]
    text = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


QUESTION = ("Every score answers one question: how well does the released table represent the consortium's "
            "pooled held-out rows?")
TABLE_TITLE = "What each strategy releases, scored against the consortium's pooled held-out rows:"
OWN_SITE = ("A different question: does the release serve each hospital? Each site's release against that site's own "
            "held-out rows only (not the consortium's).")


def _release(ev: Evaluation) -> str:
    if ev.release == ONE_SITE_ALONE:
        return f"one site alone (each of the {len(ev.sites)} sites' own table; the mean and the worst site)"
    return "the consortium's one generator (every site's draws together)"


def summary_table(sections: list[RunSection], keys: tuple[str, ...] | None = None) -> str:
    """One row per strategy with the `keys` scores (default: the headline ones); a strategy whose sites each
    release their own table gets the sites' mean and the worst site, labelled "one site alone". Then a line
    saying which direction is better."""
    keys = keys or headline()
    rows = []
    for s in sections:
        ev = s.evaluation
        if ev.release == ONE_SITE_ALONE:
            rows.append({"strategy": f"{s.name} (one site alone, mean of {len(ev.sites)})",
                         **{k: ev.scores.get(k, np.nan) for k in keys}})
            rows.append({"strategy": f"{s.name} (one site alone, worst)", **{k: ev.worst.get(k, np.nan) for k in keys}})
        else:
            rows.append({"strategy": s.name, **{k: ev.scores.get(k, np.nan) for k in keys}})
    frame = pd.DataFrame(rows, columns=["strategy", *keys])
    legend = ", ".join(f"{k} {metric(k).sign}" for k in keys)
    table = frame.to_string(index=False, float_format=lambda x: f"{x:.4f}")
    return f"{TABLE_TITLE}\n{table}\n(+ higher / - lower is better: {legend})"
