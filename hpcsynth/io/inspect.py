"""Reading run files back: a readable summary (`hpcsynth inspect`) and table export (`hpcsynth export`)."""
from __future__ import annotations

from pathlib import Path

import h5py
import pandas as pd

from hpcsynth.evaluate.metrics import headline, per_round
from hpcsynth.evaluate.report import OWN_SITE, QUESTION, RunSection, sites_frame, summary_table
from hpcsynth.evaluate.suite import Evaluation
from hpcsynth.io.evaluation import read_evaluation
from hpcsynth.io.runfile import compared_strategies, read_table
from hpcsynth.messages import ConfigError


def _open(path: str | Path) -> h5py.File:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such run file")
    try:
        return h5py.File(p, "r")
    except OSError:
        raise ConfigError(f"{p}: not an HDF5 run file") from None


def _run_group(f: h5py.File, path: str | Path, strategy: str | None) -> h5py.Group:
    """The run itself, or in a comparison file the linked run of `strategy` (default: the first)."""
    if f.attrs.get("kind") != "comparison":
        return f
    names = list(f["runs"])
    name = strategy or names[0]
    if name not in names:
        raise ConfigError(f"{path}: no strategy {name!r} in this comparison (has: {', '.join(names)})")
    return f["runs"][name]


def _describe_run(g: h5py.Group) -> list[str]:
    a = g.attrs
    lines = [f"strategy: {a['strategy']}   sites: {a['n_sites']}   status: {a['status']}   created: {a['created']}"]
    cfg = g["config"].attrs
    lines.append("versions: " + ", ".join(f"{k} {cfg[k]}" for k in cfg if k != "source"))
    schema = g["schema"]
    columns = [n for n in schema if n != "transformer"]
    kinds = pd.Series([schema[n].attrs["kind"] for n in columns]).value_counts()
    lines.append(f"schema: {len(columns)} columns ({', '.join(f'{v} {k}' for k, v in kinds.items())})")
    if "synthetic" in g:
        sizes = {name: len(next(iter(t.values()))) for name, t in g["synthetic"].items()}
        lines.append("synthetic rows: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    if "rounds" in g:
        lines.append("rounds:")
        lines += ["  " + line for line in pd.DataFrame(g["rounds"][()]).round(4).to_string(index=False).splitlines()]
    if "checkpoint" in g:
        c = g["checkpoint"]
        lines.append(f"checkpoint: round {c.attrs['round']}, parameters {c['params'].shape}")
    if "privacy" in g:
        lines += _describe_privacy(g["privacy"].attrs)
    stored = read_evaluation(g)
    if stored is not None:
        directions = g["evaluation/directions"].attrs
        lines.append(f"evaluation (release: {stored.release}; {QUESTION})")
        lines += [f"  {k:<20} {v:.4f}  ({directions.get(k, '?')} is better)" for k, v in stored.scores.items()]
        if stored.sites:
            lines += ["  each site alone:"] + _indented(sites_frame(stored).to_string(index=False, float_format=_f4))
        if stored.own_site:
            lines += [f"  {OWN_SITE}"] + _indented(sites_frame(stored, True).to_string(index=False, float_format=_f4))
    return lines


def _f4(x: float) -> str:
    return f"{x:.4f}"


def _indented(text: str) -> list[str]:
    return ["    " + line for line in text.splitlines()]


def _comparison(f: h5py.File) -> list[str]:
    """Every strategy's stored scores in the table `hpcsynth evaluate` prints (the same numbers)."""
    sections = [RunSection(name, read_evaluation(f["runs"][name]) or Evaluation()) for name in compared_strategies(f)]
    present = {k for s in sections for k in s.evaluation.scores}
    keys = tuple(k for k in (*dict.fromkeys((*per_round(), *headline())), "wall_s") if k in present)
    return ["comparison:"] + _indented(summary_table(sections, keys))


def _describe_privacy(p: h5py.AttributeManager) -> list[str]:
    """The budget, what the transform statistics took of it, and what each site spent."""
    lines = [f"privacy: epsilon {p['epsilon_budget']:g}, delta {p['delta']:g} ({p['accountant']} accountant), "
             f"clipping norm {p['max_grad_norm']:g}"]
    if p.get("statistics_releases", 0):
        lines.append(f"  transform statistics: {p['statistics_releases']} Gaussian releases, noise multiplier "
                     f"{p['statistics_noise_multiplier']:.3g} ({p['statistics_share']:.0%} of epsilon)")
    else:
        lines.append("  transform statistics: exact (not covered by epsilon)")
    spent = ", ".join(f"{e:.3f}" for e in p["epsilon_spent"])
    sigma = ", ".join(f"{s:.3g}" for s in p["noise_multiplier"])
    lines.append(f"  epsilon spent per site: {spent}; DP-SGD noise multiplier per site: {sigma}")
    return lines


def describe(path: str | Path) -> str:
    """A readable multi-line summary of a run or comparison file."""
    with _open(path) as f:
        lines = [f"{path}: hpcsynth {f.attrs.get('kind', 'run')} file, version {f.attrs.get('hpcsynth_version')}"]
        if f.attrs.get("kind") == "comparison":
            lines += _comparison(f)
            for name in compared_strategies(f):
                lines += ["", f"[{name}] {f['runs'].get(name, getlink=True).filename}"]
                lines += ["  " + line for line in _describe_run(f["runs"][name])]
        else:
            lines += _describe_run(f)
    return "\n".join(lines)


def load_synthetic(path: str | Path, site: int | None = None, strategy: str | None = None) -> pd.DataFrame:
    """A synthetic table (pooled, or one site's) with the original column names, labels and pandas dtypes."""
    with _open(path) as f:
        g = _run_group(f, path, strategy)
        name = "pooled" if site is None else f"site_{site}"
        if "synthetic" not in g or name not in g["synthetic"]:
            raise ConfigError(f"{path}: no synthetic table {name!r}")
        return read_table(g["synthetic"][name])


def export(path: str | Path, out: str | Path, site: int | None = None, strategy: str | None = None) -> Path:
    """Write a synthetic table to CSV or Parquet (chosen by the extension), in the input's dtypes: the CSV reads
    back under pandas.read_csv as the input CSV did, and Parquet keeps pandas dtypes, Categoricals included."""
    frame = load_synthetic(path, site, strategy)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(target, index=False)
    elif target.suffix.lower() == ".csv":
        frame.to_csv(target, index=False)
    else:
        raise ConfigError(f"{target}: unknown output type; use .csv or .parquet")
    return target
