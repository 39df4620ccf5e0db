"""Reading run files back: a readable summary (`hpcsynth inspect`) and table export (`hpcsynth export`)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import pandas as pd

from hpcsynth.evaluate.metrics import headline, per_round
from hpcsynth.evaluate.policy import DEFAULT_POLICY
from hpcsynth.evaluate.report import OWN_SITE, QUESTION, RunSection, sites_frame, summary_table
from hpcsynth.evaluate.suite import Evaluation
from hpcsynth.evaluate.temporal_metrics import sequence_table
from hpcsynth.io.evaluation import read_evaluation
from hpcsynth.io.gate import judge
from hpcsynth.io.runfile import compared_strategies, read_table
from hpcsynth.io.sequence_runfile import is_sequence_run, long_format, read_sequences
from hpcsynth.io.study import describe_study
from hpcsynth.messages import ConfigError, warn


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


@contextmanager
def open_run(path: str | Path, strategy: str | None = None) -> Iterator[h5py.Group]:
    """The run of a run file, or in a comparison file the linked run of `strategy`, open for reading."""
    with _open(path) as f:
        yield _run_group(f, path, strategy)


def _describe_run(g: h5py.Group) -> list[str]:
    a = g.attrs
    lines = [f"strategy: {a['strategy']}   sites: {a['n_sites']}   status: {a['status']}   created: {a['created']}"]
    cfg = g["config"].attrs
    lines.append("versions: " + ", ".join(f"{k} {cfg[k]}" for k in cfg if k != "source"))
    if is_sequence_run(g):
        return lines + _describe_sequences(g)
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


def _describe_sequences(g: h5py.Group) -> list[str]:
    """The rest of a longitudinal run: patients and visits per release, rounds, the temporal scores."""
    sizes = {name: (len(next(iter(t["context"].values()))), len(next(iter(t["visits"].values()))))
             for name, t in g["synthetic"].items()}
    lines = ["synthetic patients / visits: " + ", ".join(f"{k} {p} / {v}" for k, (p, v) in sizes.items())]
    lines += ["rounds:"] + _indented(pd.DataFrame(g["rounds"][()]).round(4).to_string(index=False))
    scores = dict(g["evaluation"].attrs)
    alone = " (one site alone: the sites' mean)" if "worst" in g["evaluation"] else ""
    lines.append(f"evaluation{alone}, against the consortium's pooled held-out patients:")
    return lines + [f"  {k:<42} {float(v):.4f}" for k, v in scores.items()]


def _f4(x: float) -> str:
    return f"{x:.4f}"


def _indented(text: str) -> list[str]:
    return ["    " + line for line in text.splitlines()]


def _comparison(f: h5py.File) -> list[str]:
    """Every strategy's stored scores in the table `hpcsynth evaluate` prints (the same numbers); for a
    longitudinal job, the table `hpcsynth run` printed."""
    if all(is_sequence_run(f["runs"][name]) for name in compared_strategies(f)):
        scores = {name: dict(f["runs"][name]["evaluation"].attrs) for name in compared_strategies(f)}
        return ["comparison:"] + _indented(sequence_table(scores))
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
    for sigma, count in zip(p.get("model_release_noise_multiplier", []), p.get("model_releases", [])):
        lines.append(f"  the model's own releases (outside DP-SGD): {count} Gaussian, noise multiplier {sigma:.3g}")
    spent = ", ".join(f"{e:.3f}" for e in p["epsilon_spent"])
    sigma = ", ".join(f"{s:.3g}" for s in p["noise_multiplier"])
    lines.append(f"  epsilon spent per site: {spent}; DP-SGD noise multiplier per site: {sigma}")
    return lines


def describe(path: str | Path) -> str:
    """A readable multi-line summary of a run, comparison or study file."""
    with _open(path) as f:
        lines = [f"{path}: hpcsynth {f.attrs.get('kind', 'run')} file, version {f.attrs.get('hpcsynth_version')}"]
        if f.attrs.get("kind") == "study":
            lines += describe_study(f)
        elif f.attrs.get("kind") == "comparison":
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
        if is_sequence_run(g):  # visits in long format: one row per visit, the patient's context repeated
            return long_format(read_sequences(g, name))
        return read_table(g["synthetic"][name])


def table_format(path: str | Path) -> str:
    """"csv" or "parquet", from the file's extension (ConfigError otherwise)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise ConfigError(f"{path}: unknown output type; use .csv or .parquet")


def write_frame(frame: pd.DataFrame, path: str | Path, fmt: str) -> None:
    """Write a table as `fmt` ("csv" or "parquet") in the input's dtypes: the CSV reads back under
    pandas.read_csv as the input CSV did, and Parquet keeps pandas dtypes, Categoricals included."""
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def export(path: str | Path, out: str | Path, site: int | None = None, strategy: str | None = None) -> Path:
    """Write a synthetic table to CSV or Parquet (chosen by the extension), in the input's dtypes (`write_frame`).
    Warns when the run's stored scores fail the default release policy: only `hpcsynth release` clears a table
    to leave the sites."""
    fmt = table_format(out)
    frame = load_synthetic(path, site, strategy)
    with open_run(path, strategy) as run:
        failed = [] if is_sequence_run(run) else [o for o in judge(run, DEFAULT_POLICY, site) if not o.passed]
        if is_sequence_run(run):
            warn(f"export: {path} holds visit sequences, which no release policy covers yet; this table is not "
                 "cleared to leave the sites")
    if failed:
        warn(f"export: {path} fails the default release policy ({', '.join(o.check.name for o in failed)}); this "
             "table is not cleared to leave the sites (`hpcsynth release` says why; docs/release.md)")
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_frame(frame, target, fmt)
    return target
