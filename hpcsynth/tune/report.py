"""The HTML report of a study (`<output>.html` beside the study file): what the search found and what mattered.

Three figures, embedded as PNG with the run report's helpers (`hpcsynth.evaluate.report`): every objective
against the trial number (completed trials as points with the best so far, pruned ones grey, failed ones as red
marks under the axis); the Pareto front, the first objective (the one that matters most) against each other
objective, e.g. quality against epsilon or against membership AUROC; and the parameter importances per
objective from Optuna's fANOVA (`FanovaImportanceEvaluator`: a random forest on the completed trials, each
parameter's share of the objective's variance). With fewer than `MIN_FANOVA` completed trials fANOVA has too
little to fit and the report says so instead, as it does for an objective whose value does not vary over the
trials (fANOVA finds no variance to share out); a study with one objective has no front to draw (its front is its
best trial) and says that. Then the table of trials, the front and the chosen trial.

`hpcsynth inspect STUDY.h5 --report OUT.html` draws the report again (`report_from_file`) from the journal of the
study the file was written from: fANOVA needs each trial's parameter distributions, which only the journal keeps.
"""
from __future__ import annotations

import html
from pathlib import Path

import h5py
import numpy as np
import optuna
import pandas as pd
from optuna.importance import FanovaImportanceEvaluator, get_param_importances
from optuna.trial import TrialState

from hpcsynth.evaluate.report import STYLE, _figure, _frame_html, _img
from hpcsynth.messages import ConfigError
from hpcsynth.tune.results import chosen, front, lowest_rank, trials_table, write_results
from hpcsynth.tune.search import fail_stale, open_study
from hpcsynth.tune.study_file import Study, load_study

MIN_FANOVA = 5  # completed trials below which the importances are not computed


def _label(study: Study, name: str) -> str:
    return f"{name} ({study.objectives[name]} is better)"


def objectives_figure(study: Study, table: pd.DataFrame):
    """Each objective against the trial number, with the best value so far."""
    names = list(study.objectives)
    fig, axes = _figure(1, len(names), 4.2, 3.0)
    for ax, name in zip(axes.flat, names):
        done = table[table["state"] == "COMPLETE"].sort_values("number")
        ax.plot(done["number"], done[name], "o", color="#1f4e79", markersize=4, label="complete")
        if len(done):
            best = done[name].cummax() if study.objectives[name] == "higher" else done[name].cummin()
            ax.step(done["number"], best, where="post", color="#c55a11", label="best so far")
        pruned = table[table["state"] == "PRUNED"]
        if len(pruned):
            ax.plot(pruned["number"], pruned[name], "o", color="#999999", markersize=4, label="pruned")
        failed = table[table["state"] == "FAIL"]
        if len(failed):
            ax.plot(failed["number"], np.zeros(len(failed)), "x", color="#c00000", transform=ax.get_xaxis_transform(),
                    clip_on=False, label="failed")
        ax.set_xlabel("trial", fontsize=8)
        ax.set_title(_label(study, name), fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def front_figure(study: Study, table: pd.DataFrame, optimal: list[int]):
    """The first objective against each other one: every completed trial, the front's trials joined."""
    first, others = list(study.objectives)[0], list(study.objectives)[1:]
    fig, axes = _figure(1, len(others), 4.2, 3.2)
    done = table[table["state"] == "COMPLETE"]
    on_front = done[done["number"].isin(optimal)]
    for ax, other in zip(axes.flat, others):
        ax.plot(done[other], done[first], "o", color="#bbbbbb", markersize=4, label="trials")
        line = on_front.sort_values(other)
        ax.plot(line[other], line[first], "o-", color="#1f4e79", markersize=5, label="Pareto front")
        for _, row in line.iterrows():
            ax.annotate(str(int(row["number"])), (row[other], row[first]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xlabel(_label(study, other), fontsize=8)
        ax.set_ylabel(_label(study, first), fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def importances(study: Study, shared: optuna.Study) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Each objective's parameter importances from fANOVA (normalised to sum to 1, seeded with the study's
    seed), and why fANOVA could not fit an objective (its values do not vary over the completed trials)."""
    keys = [p.key for p in study.params]
    found, missing = {}, {}
    for i, name in enumerate(study.objectives):
        try:
            found[name] = get_param_importances(shared, evaluator=FanovaImportanceEvaluator(seed=study.seed),
                                                params=keys, target=lambda t, i=i: t.values[i])
        except RuntimeError as err:  # fANOVA's "zero total variance in all trees"
            missing[name] = f"fANOVA could not fit {name} ({err}): its value hardly varies over the trials"
    return found, missing


def importance_figure(found: dict[str, dict[str, float]]):
    """A bar per parameter and objective: its share of the objective's variance."""
    fig, axes = _figure(1, len(found), 4.2, 0.4 * max(len(v) for v in found.values()) + 1.4)
    for ax, (name, shares) in zip(axes.flat, found.items()):
        keys = sorted(shares, key=shares.get)
        ax.barh(keys, [shares[k] for k in keys], color="#1f4e79")
        ax.set_xlim(0, 1)
        ax.set_title(f"{name}: fANOVA importance", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def write_study_report(study: Study, shared: optuna.Study, path: str | Path | None = None) -> Path:
    """Write the study's self-contained HTML report (default: the study file's path with .html); return it."""
    table = trials_table(study, shared)
    optimal = front(shared)
    numbers = [t.number for t in optimal]
    best = lowest_rank(study, shared) if study.sampler == "iorbo" else chosen(shared, optimal)
    completed = len(shared.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    states = ", ".join(f"{n} {s}" for s, n in table["state"].value_counts().items())
    body = [f"<h1>Tuning study {html.escape(study.source.name)}</h1>",
            _note(f"{len(table)} trials ({states}) of a budget of {study.trials}; sampler {study.sampler}; "
                  f"base job {study.job}."),
            "<h2>The objectives against the trial</h2>", _img(objectives_figure(study, table), "objectives")]
    body.append("<h2>The Pareto front</h2>")
    if len(study.objectives) > 1:
        body.append(_img(front_figure(study, table, numbers), "Pareto front"))
    else:
        body.append(_note("One objective: the front is the best trial."))
    body.append("<h2>Parameter importances (fANOVA)</h2>")
    if completed >= MIN_FANOVA:
        found, missing = importances(study, shared)
        if found:
            body.append(_img(importance_figure(found), "parameter importances"))
        body += [_note(reason) for reason in missing.values()]
    else:
        body.append(_note(f"Not computed: fANOVA needs at least {MIN_FANOVA} completed trials to fit its forest, "
                          f"and this study has {completed}."))
    body += ["<h2>Trials</h2>", _frame_html(table.drop(columns=["run"])),
             _note("Front (Pareto-optimal trials): " + (", ".join(map(str, numbers)) or "none") + ". Best: "
                   + (f"trial {best.number}, its job file {study.trial_folder(best.number) / 'job.yaml'}."
                      if best is not None else "none (no trial completed)."))]
    text = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(study.source.name)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>")
    target = Path(path) if path is not None else study.output.with_suffix(".html")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def conclude(study: Study) -> tuple[Path, Path]:
    """When no worker runs any more: record trials still running as failed (their workers were lost), write the
    study file (`hpcsynth.tune.results`) and this report; return their paths."""
    shared = open_study(study)
    fail_stale(shared)
    return write_results(study, shared), write_study_report(study, shared)


def study_of_file(path: str | Path) -> Study:
    """The study a study HDF5 file was written from (its `/study` source), whose journal must still be there."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != "study":
            raise ConfigError(f"{path}: not a study file; --report draws a study's report (`hpcsynth evaluate` "
                              "writes a run's)")
        source = f["study"].attrs["source"]
    study = load_study(source)
    if not study.journal.is_file():
        raise ConfigError(f"{path}: its study's journal {study.journal} is gone; the report is drawn from it")
    return study


def report_from_file(path: str | Path, out: str | Path) -> Path:
    """Write the report of the study file `path` to `out` from its study's journal, as it stands now (trials run
    since the file was written included); return `out`."""
    study = study_of_file(path)
    return write_study_report(study, open_study(study), out)
