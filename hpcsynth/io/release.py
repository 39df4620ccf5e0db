"""The release file: the one artefact of a run that may leave the hospitals, written only when a policy passes.

It holds the synthetic rows of one table (pooled, or one site's) in the input's dtypes, the schema (each column's
kind, role and dtype), the scores of that table with their directions, the privacy accounting (budget, epsilon
spent per site, delta, accountant) and the provenance: the job file, the hpcsynth version, the run's id and a
SHA-256 of the rows. Never the weights (`/checkpoint`), the fitted transform, the evaluation's curves or any other
statistic of real rows. As HDF5 it is self-describing (the rows as `/synthetic`, read with
`hpcsynth.io.runfile.read_table`); as CSV or Parquet the rest goes to the sidecar `<out>.provenance.json`.

The checksum is the SHA-256 of the rows as CSV (`frame.to_csv(index=False)`, UTF-8): the CSV release's own bytes,
and what any other form of the release gives when read back and written so. Everything is judged before anything
is written, and written through a temporary file and a rename, readable by all (0644).
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

import hpcsynth
from hpcsynth.evaluate.policy import DEFAULT_POLICY, Outcome, Policy
from hpcsynth.files import SHAREABLE
from hpcsynth.io.gate import judge, table_scores
from hpcsynth.io.inspect import load_synthetic, open_run, table_format, write_frame
from hpcsynth.io.runfile import atomic_file, atomic_write

CHECKSUM_OF = "the rows as CSV: pandas DataFrame.to_csv(index=False), UTF-8"
PRIVACY_KEPT = ("epsilon_budget", "epsilon_spent", "delta", "accountant")


class ReleaseRefused(Exception):
    """The policy was not met; `failed` holds the outcome of every check that failed."""

    def __init__(self, failed: list[Outcome]) -> None:
        super().__init__("; ".join(o.line() for o in failed))
        self.failed = failed


def rows_sha256(frame: pd.DataFrame) -> str:
    """The release's checksum: SHA-256 of the rows as CSV (see `CHECKSUM_OF`)."""
    return hashlib.sha256(frame.to_csv(index=False).encode("utf-8")).hexdigest()


def run_id(run: h5py.Group) -> str:
    """The run's stored id; for a run file written before run files kept one, an id made of its creation time and
    a hash of that time, its strategy and its job file (the same for every release of the same run)."""
    if "run_id" in run.attrs:
        return str(run.attrs["run_id"])
    created = str(run.attrs["created"])
    digest = hashlib.sha256("\n".join((created, str(run.attrs["strategy"]), _text(run["config"]))).encode())
    return f"{created}-{digest.hexdigest()[:12]}"


def _text(ds: h5py.Dataset) -> str:
    value = ds[()]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _plain(value: object) -> object:
    """An HDF5 attribute as JSON-ready Python (numpy scalars and arrays as numbers and lists)."""
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


def manifest(run: h5py.Group, frame: pd.DataFrame, table: str, site: int | None,
             outcomes: list[Outcome], policy: Policy) -> dict:
    """Everything a release holds besides its rows, as JSON-ready values."""
    scores = table_scores(run, site)
    stored = run["evaluation/directions"].attrs if "evaluation/directions" in run else {}
    accounting = run["privacy"].attrs if "privacy" in run else {}
    privacy = {k: _plain(accounting[k]) for k in PRIVACY_KEPT if k in accounting}
    schema = {name: {k: _plain(v) for k, v in run["schema"][name].attrs.items() if k in ("kind", "role", "dtype")}
              for name in frame.columns}
    return {"kind": "release", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "hpcsynth_version": hpcsynth.__version__, "run_id": run_id(run), "run_created": str(run.attrs["created"]),
            "run_hpcsynth_version": str(run.attrs.get("hpcsynth_version", "")), "strategy": str(run.attrs["strategy"]),
            "table": table, "rows": len(frame), "rows_sha256": rows_sha256(frame), "rows_sha256_of": CHECKSUM_OF,
            "config": _text(run["config"]), "config_source": str(run["config"].attrs.get("source", "")),
            "schema": schema, "scores": scores, "directions": {k: str(stored[k]) for k in scores if k in stored},
            "privacy": privacy, "policy": {"source": policy.source, "checks": [o.line() for o in outcomes]}}


def _fill(f: h5py.File, run: h5py.Group, table: str, info: dict) -> None:
    f.attrs.update({k: info[k] for k in ("kind", "created", "hpcsynth_version", "run_id", "run_created",
                                         "run_hpcsynth_version", "strategy", "table", "rows", "rows_sha256",
                                         "rows_sha256_of")})
    f.attrs["status"] = "complete"
    f.create_dataset("config", data=info["config"]).attrs["source"] = info["config_source"]
    schema = f.create_group("schema")
    for name, attrs in info["schema"].items():
        schema.create_group(name).attrs.update(attrs)
    run.copy(run["synthetic"][table], f, "synthetic")  # the stored datasets as they are: codes, labels, dtypes
    evaluation = f.create_group("evaluation")
    evaluation.attrs.update(info["scores"])
    evaluation.create_group("directions").attrs.update(info["directions"])
    if info["privacy"]:
        f.create_group("privacy").attrs.update(info["privacy"])
    f.create_group("policy").attrs.update({"source": info["policy"]["source"],
                                           "checks": json.dumps(info["policy"]["checks"])})


def release(path: str | Path, out: str | Path, site: int | None = None, strategy: str | None = None,
            policy: Policy = DEFAULT_POLICY) -> tuple[Path, list[Outcome]]:
    """Judge the table of `path` (pooled, or site `site`'s; in a comparison file, `strategy`'s run) by `policy`
    and write it to `out` (.h5, .csv or .parquet). Raises ReleaseRefused, writing nothing, when a check fails;
    returns the file written and every check's outcome."""
    target = Path(out)
    fmt = "h5" if target.suffix.lower() in (".h5", ".hdf5") else table_format(target)
    if target.resolve() == Path(path).resolve():
        raise ValueError(f"{target}: the release cannot overwrite the run file it comes from")
    frame = load_synthetic(path, site, strategy)
    table = "pooled" if site is None else f"site_{site}"
    with open_run(path, strategy) as run:
        outcomes = judge(run, policy, site)
        failed = [o for o in outcomes if not o.passed]
        if failed:
            raise ReleaseRefused(failed)
        info = manifest(run, frame, table, site, outcomes, policy)
        if fmt == "h5":
            return atomic_write(target, lambda f: _fill(f, run, table, info), SHAREABLE), outcomes
    sidecar = target.with_name(target.name + ".provenance.json")
    atomic_file(target, lambda tmp: write_frame(frame, tmp, fmt), SHAREABLE)
    try:
        atomic_file(sidecar, lambda tmp: tmp.write_text(json.dumps(info, indent=1), encoding="utf-8"), SHAREABLE)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target, outcomes
