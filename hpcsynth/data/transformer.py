"""The whole-table transformer: one fitted transform per column, shared by every site.

It turns a site's DataFrame into the float32 matrix the generators train on and turns generated matrices back
into DataFrames with the original column names, kinds and category labels. Fitting is collective (every rank
calls `fit` with its own rows and the same communicator) and ends with the same state everywhere, which the
run file stores in `/schema` so that a table can be decoded later without any real row.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.data.declaration import Declarations
from hpcsynth.data.mode_specific import ModeSpecificTransform
from hpcsynth.data.private_stats import StatisticsBudget, StatisticsNoise
from hpcsynth.data.schema import ColumnSpec, DataError, infer_schema
from hpcsynth.data.transforms import CategoricalTransform, NumericTransform, transform_for
from hpcsynth.messages import warn

NUMERIC = ("quantile", "mode_specific")


class TableTransformer:
    """Encode and decode whole tables; `spans` tells a generator how each output block is distributed.

    `numeric` picks the transform of integer and continuous columns: `quantile` (to a standard normal, the
    default) or `mode_specific` (CTGAN's mixture-mode normalisation, `hpcsynth.data.mode_specific`); the time of
    a declared time and event is quantile-encoded either way.
    `zero_time` and `zero_time_rows` are the zero-time rule that loading applied to the survival time and the
    rows it changed at this site; `fit` sums the rows over sites into `survival_`, which the schema records."""

    def __init__(self, categorical: list[str] = (), time: str | None = None, event: str | None = None,
                 numeric: str = "quantile", kinds: dict[str, str] | None = None, target: str | None = None,
                 bounds: dict[str, list[float]] | None = None, levels: dict[str, list] | None = None,
                 zero_time: float | None = None, zero_time_rows: int = 0) -> None:
        self.categorical = list(categorical)
        self.time = time
        self.event = event
        self.numeric = numeric
        self.kinds = dict(kinds or {})
        self.target = target
        self.bounds = {k: (float(v[0]), float(v[1])) for k, v in (bounds or {}).items()}
        self.levels = {k: list(v) for k, v in (levels or {}).items()}
        self.zero_time = zero_time
        self.zero_time_rows = zero_time_rows

    @classmethod
    def declared(cls, declarations: Declarations, numeric: str = "quantile") -> TableTransformer:
        """The unfitted transform of a source's declared columns: the one way a job, the shift report and the
        evaluation build it, so that all of them encode alike."""
        d = declarations
        return cls(d.categorical, d.time, d.event, numeric=numeric, kinds=d.kinds, target=d.target,
                   bounds=d.bounds, levels=d.levels, zero_time=d.zero_time, zero_time_rows=d.zero_time_rows)

    def fit(self, frame: pd.DataFrame, comm: Communicator | None = None,
            privacy: StatisticsBudget | None = None) -> TableTransformer:
        """Infer the schema and fit every column's transform from merged statistics (collective). With
        `privacy`, every site noises its statistics (`hpcsynth.data.private_stats`) and `privacy_` records the
        noise multiplier and the number of releases, for the accountant."""
        comm = comm or SoloComm()
        if self.numeric not in NUMERIC:
            raise ValueError(f"numeric: expected one of {', '.join(NUMERIC)}, got {self.numeric!r}")
        self.schema_ = infer_schema(frame, comm, self.categorical, self.time, self.event, self.kinds, self.target)
        self._check_declared()
        noise = privacy.noise(self.schema_, self.bounds, self.levels, self.numeric, comm.rank) if privacy else None
        self.transforms_ = [self._fit_column(spec, frame[spec.name], comm, noise) for spec in self.schema_]
        self._limit_category_orders()
        self.privacy_ = {"noise_multiplier": noise.noise_multiplier, "releases": noise.releases,
                         "levels_delta": noise.levels_delta} if noise else None
        self.survival_ = self._survival(comm)
        if comm.is_root:
            self._warn_constant()
        return self

    def _limit_category_orders(self) -> None:
        """A pandas Categorical's recorded category order keeps only the levels its transform kept."""
        for spec, t in zip(self.schema_, self.transforms_):
            if spec.dtype is not None and isinstance(t, CategoricalTransform):
                spec.dtype = spec.dtype.within(t.labels_)

    def _survival(self, comm: Communicator) -> dict | None:
        """The zero-time rule and the rows it changed on every site together (collective), with a time column."""
        if self.time is None or self.zero_time is None:
            return None
        rows = comm.Allreduce(np.array([float(self.zero_time_rows)]), "sum")
        return {"time": self.time, "zero_time": float(self.zero_time), "zero_time_rows": int(rows[0])}

    def _check_declared(self) -> None:
        """Public bounds name numeric columns and public levels categorical ones (a DataError otherwise)."""
        kinds = {spec.name: spec.kind for spec in self.schema_}
        for option, names, fits in (("data.bounds", self.bounds, ("integer", "continuous", "datetime")),
                                    ("data.levels", self.levels, ("categorical", "binary"))):
            for name in names:
                if kinds.get(name) not in fits:
                    what = f"a {kinds[name]} column" if name in kinds else "not a column of the data"
                    raise DataError(f"{option}.{name}: {what}; expected one of kinds {', '.join(fits)}",
                                    everywhere=True)

    def _fit_column(self, spec: ColumnSpec, values: pd.Series, comm: Communicator,
                    noise: StatisticsNoise | None):
        transform = self._transform(spec)
        if isinstance(transform, CategoricalTransform):
            return transform.fit(values, comm, noise, self.levels.get(spec.name))
        if isinstance(transform, ModeSpecificTransform):  # never private: count_releases refuses it first
            return transform.fit(values, comm, self.bounds.get(spec.name))
        return transform.fit(values, comm, noise, self.bounds.get(spec.name))

    def _warn_constant(self) -> None:
        """A column with one value on every site is kept (the generator reproduces it) but worth a look."""
        for t in self.transforms_:
            if isinstance(t, CategoricalTransform) and len(t.labels_) == 1 or \
                    isinstance(t, NumericTransform) and t.max_ == t.min_:
                warn(f"column {t.spec.name!r} has a single value on every site; it is reproduced as is")

    def _transform(self, spec: ColumnSpec) -> NumericTransform | CategoricalTransform | ModeSpecificTransform:
        """The column's transform: `transform_for`'s, or the mode-specific one for an integer or continuous column
        under `numeric: mode_specific`, except the time of a declared (time, event) pair, which is always
        quantile-encoded: a survival head's time bins are the time's quantiles (`hpcsynth.models.time_head`)."""
        if self.numeric == "mode_specific" and spec.kind in ("integer", "continuous") \
                and not self._survival_time(spec):
            return ModeSpecificTransform(spec)
        return transform_for(spec)

    def _survival_time(self, spec: ColumnSpec) -> bool:
        """Whether `spec` is the time of a declared time and event."""
        return spec.name == self.time and self.event is not None

    @property
    def columns(self) -> list[str]:
        return [spec.name for spec in self.schema_]

    @property
    def width(self) -> int:
        return sum(t.width for t in self.transforms_)

    @property
    def spans(self) -> list[tuple[str, int]]:
        """The generator's output layout, block after block: ("gaussian", 1) or ("softmax", k)."""
        return [span for t in self.transforms_ for span in t.spans]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        blocks = [t.encode(frame[t.spec.name]) for t in self.transforms_]
        return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)

    def decode(self, matrix: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
        """A DataFrame from generator output (values for Gaussian blocks, logits for softmax blocks), every
        column in the pandas dtype it came in with."""
        columns, start = {}, 0
        for t in self.transforms_:
            columns[t.spec.name] = t.decode(matrix[:, start:start + t.width], rng)
            start += t.width
        return pd.DataFrame(columns)

    def state(self) -> str:
        """The fitted transformer as JSON text (schema and every column's state)."""
        return json.dumps({
            "categorical": self.categorical, "time": self.time, "event": self.event, "numeric": self.numeric,
            "kinds": self.kinds, "target": self.target, "bounds": self.bounds, "levels": self.levels,
            "zero_time": self.zero_time, "privacy": getattr(self, "privacy_", None),
            "survival": getattr(self, "survival_", None),
            "columns": [{**spec.to_dict(), "state": t.state()} for spec, t in zip(self.schema_, self.transforms_)],
        })

    @classmethod
    def from_state(cls, text: str) -> TableTransformer:
        data = json.loads(text)
        self = cls(data["categorical"], data["time"], data["event"], data["numeric"], data["kinds"], data["target"],
                   data.get("bounds"), data.get("levels"), data.get("zero_time"))
        self.privacy_ = data.get("privacy")
        self.survival_ = data.get("survival")
        self.schema_, self.transforms_ = [], []
        for column in data["columns"]:
            spec = ColumnSpec.from_dict(column)
            self.schema_.append(spec)
            # a schema written before survival times were always quantile-encoded may hold a mode-specific time
            transform = ModeSpecificTransform(spec) if "means" in column["state"] else self._transform(spec)
            self.transforms_.append(transform.load_state(column["state"]))
        return self

    def transform_of(self, name: str) -> NumericTransform | CategoricalTransform | ModeSpecificTransform:
        return self.transforms_[self.columns.index(name)]
