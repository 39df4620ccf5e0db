"""`Generator`, the estimator every family is (scikit-learn's contract, plus sampling, saving and loading).

The constructor only stores its keyword arguments, so `get_params`, `set_params` and `sklearn.base.clone` follow
from its signature. `fit(df)` fits the table transform and the model; `sample(n, seed=, conditions=)` draws rows
in the original units; `save(path)` writes one HDF5 file (hyperparameters, the fitted transform, the fitted
arrays) that `Generator.load(path)` reads back without unpickling anything. Fitted state ends in `_`.

A family implements `setup` (bind a fitted transform), `_fit_rows` (train on encoded rows), `_sampler` (its
seeded draws), `_fitted_arrays` and `_load_fitted_arrays` (what `save` keeps beyond the transform).
"""
from __future__ import annotations

import abc
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np
import pandas as pd

from hpcsynth.data.declaration import Declarations
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.files import create_private
from hpcsynth.models.conditions import condition_codes, rejection_sample

FILE_FORMAT = "hpcsynth-generator"
FILE_VERSION = 1
Draw = Callable[[int, dict[int, int]], pd.DataFrame]  # (rows, {column index: level code}) -> rows


class Generator(abc.ABC):
    """The base of every generator family: hyperparameters, fit, sample, save and load.

    Families declare, for the registry and config validation (never found with `hasattr`):
    `name` (the job file's `model.name`), `trains_by` ("gradients": rounds of local steps, or "counts": one
    exact exchange of counts), `has_latent` (latent-space strategies apply), `dp_sgd` (DP-SGD, with the
    family's own private releases, covers every release made from real rows), `default_numeric` (the numeric
    transform the family trains best on),
    `native_conditions` (whether `sample(conditions=)` conditions the model, or filters its draws),
    `batch_coupled` (a row's gradient depends on the rest of its batch, so sharding a batch changes training) and
    `one_lr` (every parameter trains at the one learning rate `lr`, which SCAFFOLD's control variates read) and
    `survival_aware` (with a time and an event declared, the time is generated last, given the covariates and
    the event, by a time head in the model: `hpcsynth.models.time_head`) and `private_finish` (when private,
    what it fits after training from the rows is a release its budget plans once, so it is fitted once per run)
    and `normalised` (it has BatchNorm layers, whose weights and statistics FedBN keeps local).
    """

    name: ClassVar[str] = "generator"
    trains_by: ClassVar[str] = "gradients"
    has_latent: ClassVar[bool] = False
    dp_sgd: ClassVar[bool] = False
    default_numeric: ClassVar[str] = "quantile"
    native_conditions: ClassVar[bool] = False
    batch_coupled: ClassVar[bool] = False
    one_lr: ClassVar[bool] = False
    survival_aware: ClassVar[bool] = False
    private_finish: ClassVar[bool] = False
    normalised: ClassVar[bool] = False
    transformer_type: ClassVar[type] = TableTransformer  # what `load` rebuilds the saved transform as
    _SAMPLE = 1  # the purpose key of the sampling streams
    compile_s_: float = 0.0  # seconds spent compiling training steps so far (families that compile add to it)

    seed: int
    categorical: list[str]
    time: str | None
    event: str | None
    numeric: str | None = None  # a family without this parameter fits its `default_numeric`

    # -- hyperparameters ------------------------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor's keyword arguments, in order (no `*args` or `**kwargs` allowed)."""
        names = []
        for parameter in list(inspect.signature(cls.__init__).parameters.values())[1:]:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.__init__ must name every hyperparameter, not *{parameter.name}")
            names.append(parameter.name)
        return names

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyperparameters as the constructor took them (`deep` is accepted for scikit-learn; there are no
        nested estimators)."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params: Any) -> Generator:
        """Set hyperparameters by name; an unknown name is an error. Takes effect at the next `fit`."""
        names = self.param_names()
        for key, value in params.items():
            if key not in names:
                raise ValueError(f"{type(self).__name__} has no parameter {key!r}; parameters: {', '.join(names)}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {n: p.default for n, p in inspect.signature(type(self).__init__).parameters.items()}
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if not _same(v, defaults.get(k))]
        return f"{type(self).__name__}({', '.join(changed)})"

    # -- fitting --------------------------------------------------------------------------------------------
    def make_transformer(self) -> TableTransformer:
        """The unfitted table transform of the declared columns: `numeric`, else the family's default."""
        declarations = Declarations(categorical=list(self.categorical), time=self.time, event=self.event)
        return TableTransformer.declared(declarations, numeric=self.numeric or self.default_numeric)

    def fit(self, frame: pd.DataFrame) -> Generator:
        """Fit the table transform and the model on `frame` (one process, no MPI)."""
        transformer = self.make_transformer().fit(frame)
        self.setup(transformer)
        self._fit_rows(transformer.encode(frame))
        return self

    @abc.abstractmethod
    def setup(self, transformer: TableTransformer, stream: int = 0, local_rank: int = 0) -> Generator:
        """Bind a fitted transform and build the untrained model; `stream` keys this site's random draws."""

    @abc.abstractmethod
    def _fit_rows(self, matrix: np.ndarray) -> None:
        """Train on the encoded rows of one process."""

    # -- sampling -------------------------------------------------------------------------------------------
    def sample(self, n: int, *, seed: int | None = None, conditions: dict[str, Any] | None = None) -> pd.DataFrame:
        """`n` synthetic rows in the original columns, kinds and labels. The same `seed` (default: the
        constructor's) gives the same rows. `conditions={"column": level}` on categorical or binary columns
        gives rows with those levels: families with `native_conditions` condition the model, the others keep
        the draws that meet the conditions (an error when fewer than 1 in 100 do)."""
        self._check_fitted("sample")
        codes = condition_codes(self.transformer_, conditions)
        draw = self._sampler(self.seed if seed is None else seed)
        if codes and not self.native_conditions:
            return rejection_sample(lambda m: draw(m, {}), n, codes, self.transformer_)
        return draw(n, codes)

    def _check_fitted(self, action: str) -> None:
        if not hasattr(self, "transformer_"):
            raise RuntimeError(f"{type(self).__name__}: call fit (or load) before {action}")

    @abc.abstractmethod
    def _sampler(self, seed: int) -> Draw:
        """A function drawing rows from streams keyed by `seed` and the site, continuing them call after call."""

    # -- saving and loading ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def _fitted_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state beyond the transform, as named numeric arrays (weights, counts, priors)."""

    @abc.abstractmethod
    def _load_fitted_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore `_fitted_arrays` into a model just `setup` on the saved transform."""

    def save(self, path: str | Path) -> None:
        """Write the fitted model to an HDF5 file readable by its owner only: hyperparameters and the transform as
        JSON text, the fitted state as numeric datasets under `/fitted` (nothing pickled)."""
        self._check_fitted("save")
        create_private(path)  # the weights are a statistic of the training rows: the owner's alone
        with h5py.File(path, "w") as f:
            f.attrs.update(format=FILE_FORMAT, version=FILE_VERSION, family=self.name, stream=self.stream_,
                           params=json.dumps(self.get_params()))
            f.create_dataset("transformer", data=self.transformer_.state())
            fitted = f.create_group("fitted")
            for key, value in self._fitted_arrays().items():
                fitted.create_dataset(key, data=np.asarray(value))

    @classmethod
    def load(cls, path: str | Path) -> Generator:
        """The model `save` wrote, of the family the file names (which must be `cls` or a subclass of it)."""
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FILE_FORMAT:
                raise ValueError(f"{path}: not a generator file written by Generator.save")
            family = _family(cls, str(f.attrs["family"]))
            params, stream = json.loads(f.attrs["params"]), int(f.attrs["stream"])
            transformer = family.transformer_type.from_state(f["transformer"].asstr()[()])
            arrays = {key: dataset[()] for key, dataset in f["fitted"].items()}
        model = family(**params).setup(transformer, stream=stream)
        model._load_fitted_arrays(arrays)
        return model


def _family(base: type, name: str) -> type:
    """The subclass of `base` (or `base` itself) whose `name` is `name`."""
    pending = [base]
    while pending:
        cls = pending.pop()
        if cls.__dict__.get("name") == name:
            return cls
        pending.extend(cls.__subclasses__())
    raise ValueError(f"the file holds a {name!r} model, which is not a {base.__name__}")


def _same(a: Any, b: Any) -> bool:
    """Equal, counting a list and a tuple of equal items as the same (JSON turns tuples into lists)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a is b or (type(a) is type(b) and a == b)
