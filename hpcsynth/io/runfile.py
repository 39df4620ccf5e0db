"""The HDF5 run file: one self-describing file per run, readable with plain h5py or pandas.

`/config` (the YAML text and the versions), `/schema`, `/synthetic/pooled` and `/synthetic/site_<k>` (one
dataset per column; categories as codes with their labels), `/rounds`, `/checkpoint`, `/partition`, `/shift`,
`/privacy`, `/evaluation`; a comparison file links its runs under `/runs`. The full layout: docs/run-file.md.

Files are written by one rank, to a temporary file in the same folder that is then renamed over the target
(`os.replace`, atomic on POSIX), so a reader never sees a half-written file and a killed job never leaves a
file that looks complete. While training, checkpoints go to `<stem>.partial.h5` with status `partial`. They are
created with mode 0600 (they hold weights and statistics of real rows); only the release file
(`hpcsynth.io.release`) is written 0644.
"""
from __future__ import annotations

import json
import os
import platform
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

import hpcsynth
from hpcsynth.data.dtypes import DType, restore
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform, days_to_stamps
from hpcsynth.files import PRIVATE, create_private


@dataclass
class RunContent:
    """Everything one run file holds; fields left empty are simply not written."""

    config_text: str
    config_source: str
    strategy: str
    n_sites: int
    transformer: TableTransformer
    status: str = "complete"
    synthetic: dict[str, pd.DataFrame] = field(default_factory=dict)
    rounds: np.ndarray | None = None
    checkpoint_params: np.ndarray | None = None
    checkpoint_round: int = -1
    local_states: list[bytes] = field(default_factory=list)
    evaluation: dict[str, float] = field(default_factory=dict)
    evaluation_groups: dict[str, dict] = field(default_factory=dict)  # directions, notes, sites/site_k, ...
    evaluation_curves: dict[str, np.ndarray] = field(default_factory=dict)
    partition: dict = field(default_factory=dict)
    shift: object = None
    privacy: dict = field(default_factory=dict)


def partial_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.stem + ".partial" + p.suffix)


def versions() -> dict[str, str]:
    """The versions that decide a run's numbers, stored with its config."""
    import torch

    found = {"python": platform.python_version(), "hpcsynth": hpcsynth.__version__, "torch": torch.__version__,
             "numpy": np.__version__, "pandas": pd.__version__, "h5py": h5py.__version__}
    try:
        from mpi4py import MPI
        from mpi4py import __version__ as mpi4py_version

        found["mpi4py"] = mpi4py_version
        if MPI.Is_initialized():
            found["mpi_library"] = MPI.Get_library_version().splitlines()[0].strip()
    except ImportError:
        pass
    return {k: str(v) for k, v in found.items()}


def atomic_file(path: str | Path, write: Callable[[Path], None], mode: int = PRIVATE) -> Path:
    """Create `path` through a temporary file in its folder (`write` fills it; private while it is written),
    given `mode` whatever the umask, then renamed over the target; nothing is left behind on failure."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        create_private(tmp)
        write(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def atomic_write(path: str | Path, fill: Callable[[h5py.File], None], mode: int = PRIVATE) -> Path:
    """Write an HDF5 file through a temporary file and an atomic rename, private (0600) unless `mode` says
    otherwise; nothing is left behind on failure."""

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            fill(f)

    return atomic_file(path, write, mode)


def write_table(group: h5py.Group, frame: pd.DataFrame, transformer: TableTransformer) -> None:
    """One dataset per column: categoricals as codes with their labels, numerics as float64; each dataset
    carries its kind and the pandas dtype the column came in with, which `read_table` restores."""
    group.attrs["columns"] = json.dumps(list(frame.columns))
    for t in transformer.transforms_:
        values = frame[t.spec.name]
        if isinstance(t, CategoricalTransform):
            codes = t.codes(values)
            codes = np.where(codes == len(t.labels_), -1, codes)
            ds = group.create_dataset(t.spec.name, data=codes.astype(np.int64))
            ds.attrs["labels"] = json.dumps(t.labels_)
        else:  # numbers as float64; dates as float64 days since 1970-01-01 (NaN = missing)
            ds = group.create_dataset(t.spec.name, data=t._numbers(values))
        ds.attrs["kind"] = t.spec.kind
        if t.spec.dtype is not None:
            ds.attrs["dtype"] = t.spec.dtype.to_text()


def read_table(group: h5py.Group) -> pd.DataFrame:
    """A stored table back as a DataFrame with the original names, labels and pandas dtypes (a file written
    before dtypes were stored gives floats, integers without gaps as int64, and text labels)."""
    return pd.DataFrame({name: _read_column(group[name]) for name in json.loads(group.attrs["columns"])})


def _read_column(ds: h5py.Dataset) -> pd.Series:
    data = ds[()]
    dtype = DType.from_text(ds.attrs["dtype"]) if "dtype" in ds.attrs else None
    if "labels" in ds.attrs:
        labels = json.loads(ds.attrs["labels"])
        numeric = all(isinstance(v, (int, float)) for v in labels)
        lookup = np.array(labels + [np.nan if numeric else None], dtype=float if numeric else object)
        return restore(pd.Series(lookup[np.where(data < 0, len(labels), data)]), dtype, labels)
    if ds.attrs.get("kind") == "datetime":
        return restore(days_to_stamps(data), dtype)
    if dtype is None and ds.attrs.get("kind") == "integer" and not np.isnan(data).any():
        return pd.Series(data.astype(np.int64))
    return restore(pd.Series(data), dtype)


def _fill(f: h5py.File, run: RunContent) -> None:
    _fill_header(f, "run", run.config_text, run.config_source)
    f.attrs.update({"status": run.status, "strategy": run.strategy, "n_sites": run.n_sites})
    schema = f.create_group("schema")
    schema.create_dataset("transformer", data=run.transformer.state())
    _fill_schema(schema, run.transformer)
    for name, frame in run.synthetic.items():
        write_table(f.require_group("synthetic").create_group(name), frame, run.transformer)
    if run.partition:
        f.create_group("partition").attrs.update(run.partition)
    if run.shift is not None:
        _write_shift_group(f, run.shift)
    if run.privacy:
        f.create_group("privacy").attrs.update(run.privacy)
    if run.rounds is not None:
        f.create_dataset("rounds", data=run.rounds)
    if run.checkpoint_params is not None:
        ckpt = f.create_group("checkpoint")
        ckpt.attrs["round"] = run.checkpoint_round
        ckpt.create_dataset("params", data=run.checkpoint_params)
        for k, blob in enumerate(run.local_states):
            ckpt.create_dataset(f"site_{k}", data=np.frombuffer(blob, dtype=np.uint8))
    if run.evaluation:
        fill_evaluation(f, run.evaluation, run.evaluation_groups, run.evaluation_curves)


def fill_evaluation(f: h5py.File, scores: dict[str, float], groups: dict[str, dict],
                    curves: dict[str, np.ndarray]) -> None:
    """Write `/evaluation` (which must not exist): the scores as its attributes, each group's attributes
    (`directions`, `notes`, `sites/site_k`, ...) and the report's curves (the layout: hpcsynth.io.evaluation)."""
    group = f.create_group("evaluation")
    group.attrs.update(scores)
    for name, attrs in groups.items():
        group.create_group(name).attrs.update(attrs)
    for name, values in curves.items():
        group.create_dataset(f"curves/{name}", data=values)


def _fill_schema(schema: h5py.Group, transformer: TableTransformer) -> None:
    """A group per column (kind, role, and the pandas dtype as JSON where known); the zero-time rule and the
    rows it changed as attributes of /schema where there is a survival time."""
    for spec in transformer.schema_:
        column = schema.create_group(spec.name)
        column.attrs.update({"kind": spec.kind, "role": spec.role})
        if spec.dtype is not None:
            column.attrs["dtype"] = spec.dtype.to_text()
    if transformer.survival_ is not None:
        schema.attrs.update({"zero_time": transformer.survival_["zero_time"],
                             "zero_time_rows": transformer.survival_["zero_time_rows"]})


def _write_shift_group(f: h5py.File, report) -> None:
    group = f.create_group("shift")
    group.create_dataset("divergence", data=report.divergence)
    group.attrs.update(report.attrs())


def _fill_header(f: h5py.File, kind: str, config_text: str, config_source: str) -> None:
    f.attrs.update({"status": "complete", "kind": kind, "run_id": uuid.uuid4().hex,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "hpcsynth_version": hpcsynth.__version__})
    config = f.create_dataset("config", data=config_text)
    config.attrs.update({"source": config_source, **versions()})


def write_shift(path: str | Path, config_text: str, config_source: str, transformer: TableTransformer,
                report) -> Path:
    """A run file of kind `shift`: the config, the shared schema and the shift diagnostics."""

    def fill(f: h5py.File) -> None:
        _fill_header(f, "shift", config_text, config_source)
        f.create_group("schema").create_dataset("transformer", data=transformer.state())
        _write_shift_group(f, report)

    return atomic_write(path, fill)


def write_run(path: str | Path, run: RunContent) -> Path:
    return atomic_write(path, lambda f: _fill(f, run))


def write_comparison(path: str | Path, config_text: str, config_source: str, rows: list[dict],
                     runs: dict[str, Path]) -> Path:
    """A small file comparing strategies, linking (HDF5 external links) to each strategy's run file."""
    target = Path(path)

    def fill(f: h5py.File) -> None:
        _fill_header(f, "comparison", config_text, config_source)
        table = pd.DataFrame(rows)
        records = table.to_records(index=False)
        records = records.astype([(n, "S32" if records.dtype[n].kind in "OU" else records.dtype[n])
                                  for n in records.dtype.names])
        f.create_dataset("comparison", data=records)
        links = f.create_group("runs")
        for name, run_path in runs.items():
            links[name] = h5py.ExternalLink(os.path.relpath(run_path, target.parent), "/")

    return atomic_write(target, fill)


def compared_strategies(f: h5py.File) -> list[str]:
    """The strategies of a comparison file in the job's order (its `/comparison` rows)."""
    return [s.decode() if isinstance(s, bytes) else str(s) for s in f["comparison"]["strategy"]]
