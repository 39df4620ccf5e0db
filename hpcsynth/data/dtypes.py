"""The pandas dtype each column had on the way in, so that every output gives it back.

The transforms decode to float64 numbers, text labels or naive timestamps. A `DType` records what the column
was (int64, nullable Int64, float32, bool, string, object holding integers, a pandas Categorical, datetime64 with
its unit and time zone); sites merge theirs as pooling their rows would (`merge_dtypes`), the schema keeps the
result (and the run file's /schema), and `restore` turns decoded values back into it. Integer-coded categories
therefore come back as the same integers, never as 9.0.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

_NULLABLE = {"bool": "boolean", "int8": "Int8", "int16": "Int16", "int32": "Int32", "int64": "Int64",
             "uint8": "UInt8", "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64"}
_ITEMS = {"integer": "int64", "floating": "float64", "boolean": "bool"}  # pandas' infer_dtype -> element dtype


@dataclass(frozen=True)
class DType:
    """A column's pandas dtype as plain data (stored as JSON in the schema).

    Parameters
    ----------
    name : str
        pandas' name of the dtype: "int64", "Int64", "float32", "bool", "boolean", "object", "string",
        "category", "datetime64[us, Europe/Oslo]".
    items : str or None
        For "object" and "category": the dtype of the values (of the categories) when they are all numbers or
        booleans, such as "int64"; None for text.
    ordered : bool
        For "category": whether the categories are ordered.
    order : tuple of str
        For "category": its categories as text, in their order; the fitted schema keeps only the levels its
        transform kept (`within`), so that it names no level the release does not.
    """

    name: str
    items: str | None = None
    ordered: bool = False
    order: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {**asdict(self), "order": list(self.order)}

    @classmethod
    def from_dict(cls, data: dict) -> DType:
        return cls(data["name"], data.get("items"), bool(data.get("ordered", False)), tuple(data.get("order", ())))

    def to_text(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_text(cls, text: str) -> DType:
        return cls.from_dict(json.loads(text))

    def within(self, levels: list) -> DType:
        """This dtype with its category order limited to `levels` (a transform's labels)."""
        kept = {label_text(v) for v in levels}
        return replace(self, order=tuple(c for c in self.order if c in kept))

    def pandas(self) -> object:
        """The pandas dtype itself (a Categorical's categories are only known once the levels are)."""
        return "category" if self.name == "category" else pd.api.types.pandas_dtype(self.name)


def dtype_of(values: pd.Series) -> DType | None:
    """This site's dtype of a column, or None when the site has no value to judge by."""
    if values.isna().all():
        return None
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        items = str(dtype.categories.dtype)
        order = tuple(label_text(c) for c in dtype.categories)
        return DType("category", None if items == "object" else items, bool(dtype.ordered), order)
    if pd.api.types.is_object_dtype(dtype):
        return DType("object", _ITEMS.get(pd.api.types.infer_dtype(values, skipna=True)))
    return DType(str(dtype))


def merge_dtypes(dtypes: list[DType | None], kind: str) -> DType | None:
    """The dtype of the sites' rows pooled: pandas' rule for concatenating them, except that integers at one
    site and floats (whole numbers with gaps) at another stay integers, nullable, unless the column is
    continuous; Categoricals merge their order (the levels themselves are the transform's)."""
    seen = [d for d in dtypes if d is not None]
    if not seen or all(d == seen[0] for d in seen):
        return seen[0] if seen else None
    items = seen[0].items if all(d.items == seen[0].items for d in seen) else None
    if all(d.name == "category" for d in seen):
        order = tuple(dict.fromkeys(c for d in seen for c in d.order))
        return DType("category", items, all(d.ordered for d in seen), order)
    if kind != "continuous" and _integers_and_numbers(seen):
        return DType("Int64")
    pooled = pd.concat([pd.Series([], dtype=d.pandas()) for d in seen]).dtype
    return DType(str(pooled), items if pd.api.types.is_object_dtype(pooled) else None)


def _integers_and_numbers(dtypes: list[DType]) -> bool:
    """Integers at one site at least, and numbers (not booleans, not categories) at every site."""
    found = [pd.api.types.pandas_dtype(d.name) for d in dtypes]
    return all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in found) and \
        any(_is_integer(str(t)) for t in found)


def _is_integer(name: str) -> bool:
    dtype = pd.api.types.pandas_dtype(name)
    return pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def restore(values: pd.Series, dtype: DType | None, levels: list | None = None) -> pd.Series:
    """Decoded values (float64, text labels or naive UTC timestamps) as `dtype`; None leaves them as they are
    (a schema written before dtypes were recorded). Missing values make integers and booleans nullable.
    `levels` are a categorical column's labels, all of which a restored Categorical keeps as categories."""
    if dtype is None:
        return values
    if dtype.name == "category":
        return _categorical(values, dtype, levels)
    target = pd.api.types.pandas_dtype(dtype.name)
    if isinstance(target, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(target):
        return _datetimes(values, target)
    if pd.api.types.is_object_dtype(target):
        return pd.Series(_items(values, dtype.items), name=values.name, dtype=object)
    if pd.api.types.is_string_dtype(target):
        return pd.Series(_items(values, None), name=values.name, dtype=object).astype(target)
    return _numbers(values, target)


def _numbers(values: pd.Series, target: np.dtype) -> pd.Series:
    """Numbers or booleans; whole numbers for integer dtypes; the nullable twin where values are missing."""
    x = pd.to_numeric(values, errors="coerce")
    name = str(target)
    if _is_integer(name):
        x = x.round()
    if x.isna().any() and name in _NULLABLE:
        name = _NULLABLE[name]
    return x.astype(name)


def _datetimes(values: pd.Series, target: object) -> pd.Series:
    """Naive timestamps (UTC) in the recorded unit, converted to the recorded time zone."""
    stamps = pd.to_datetime(values, errors="coerce")
    if isinstance(target, pd.DatetimeTZDtype):
        stamps = stamps.dt.tz_localize("UTC").dt.tz_convert(target.tz)
    return stamps.astype(target)


def label_text(value: object) -> str:
    """A label as text; a whole float prints as an integer (2.0 -> "2"), as a site storing text writes it."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _items(values: pd.Series, items: str | None) -> np.ndarray:
    """Labels (text, or floats for numeric codes) as the element type `items`, missing as None."""
    present = values.notna().to_numpy()
    out = np.full(len(values), None, dtype=object)
    kept = values[present]
    if items is None:
        out[present] = [label_text(v) for v in kept]
    elif pd.api.types.is_bool_dtype(pd.api.types.pandas_dtype(items)):
        out[present] = [v if isinstance(v, (bool, np.bool_)) else label_text(v) in ("True", "true", "1")
                        for v in kept]
    else:
        numbers = pd.to_numeric(kept.map(label_text), errors="coerce").astype(np.float64)
        out[present] = (numbers.round().astype(np.int64) if _is_integer(items) else numbers).astype(object)
    return out


def _categorical(values: pd.Series, dtype: DType, levels: list | None) -> pd.Series:
    """A pandas Categorical over every level (in the declared order when ordered), of the recorded type."""
    known = values.dropna().unique() if levels is None else levels
    keys = list(dict.fromkeys(label_text(v) for v in known))
    keys = [c for c in dtype.order if c in keys] + [k for k in keys if k not in dtype.order]
    categories = pd.Index(_items(pd.Series(keys, dtype=object), dtype.items).tolist(), dtype=object)
    if dtype.items is not None:
        categories = categories.astype(dtype.items)
    codes = pd.Categorical(values.map(label_text, na_action="ignore"), categories=keys).codes
    return pd.Series(pd.Categorical.from_codes(codes, categories=categories, ordered=dtype.ordered),
                     name=values.name)
