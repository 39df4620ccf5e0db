"""Anonymeter's three risks of the EU anonymisation opinion: singling out, linkability and inference.

Anonymeter (Giomi et al. 2023, PoPETs) attacks the real rows with what the synthetic table tells, and subtracts
what the same attack achieves on rows the generator never saw (the control set): the risk is the attack's success
beyond what any sample of the population would give, with a confidence interval. Here, per site, `ori` is the
site's own training rows, `control` its own held-out rows and `syn` the release; the suite weights the sites by
training rows. The attacks:
* singling out: predicates on `N_COLS` columns found unique in the release that also single out exactly one
  training row (Anonymeter's multivariate mode; its univariate mode fills its quota of predicates in the order
  of a polars group-by, which is hash-ordered and changes from run to run, so its score is not reproducible and
  it is left out);
* linkability: the columns split in two halves; a training row is linked when both halves have the same nearest
  synthetic row;
* inference: each sensitive column guessed from all the others by its nearest synthetic row; the worst column.
Anonymeter samples its targets with numpy's global random state: it is seeded for the call and restored after, so
the scores are reproducible and nothing else's random stream moves; a lock keeps sites that run as threads of one
process (`hpcsynth.comm.SitesInOneProcess`) from seeding it under each other.
"""
from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform

N_COLS = 3  # the columns of a multivariate singling-out predicate (Anonymeter's default)
CONFIDENCE = 0.95
RISKS = ("singling_out_risk", "linkability_risk", "inference_risk")
_GLOBAL_STATE = threading.Lock()  # numpy's global random state, one user at a time


@dataclass(frozen=True)
class Risk:
    """One Anonymeter risk.

    Parameters
    ----------
    value : float
        The attack's success beyond the control attack's, in [0, 1] (0: no more than on unseen rows).
    ci_high : float
        The upper bound of its confidence interval (`CONFIDENCE`); what a release policy should bound.
    """

    value: float
    ci_high: float

    @classmethod
    def of(cls, evaluator) -> Risk:
        found = evaluator.risk(confidence_level=CONFIDENCE)
        return cls(float(found.value), float(found.ci[1]))


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """numpy's global random state seeded with `seed` inside, restored after (pandas' `sample` reads it); one
    thread at a time."""
    with _GLOBAL_STATE:
        saved = np.random.get_state()
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(saved)


@lru_cache(maxsize=1)
def _cache_compiled_kernels() -> None:
    """Keep the Numba compilation of Anonymeter's mixed-type neighbour search on disk: it is not cached by the
    library, and compiling it cost every process (every rank, every evaluation job) 20 to 60 s on a busy node;
    loaded from the cache it costs about 1 s. Without a writable cache location it compiles as before."""
    import anonymeter.evaluators  # noqa: F401  (the library's own import order: its modules import each other)
    from anonymeter.neighbors import mixed_types_kneighbors as kernels

    for dispatcher in (kernels.gower_distance, kernels._nearest_neighbors):
        try:
            dispatcher.enable_caching()
        except RuntimeError:  # no cache location numba can write
            return


def _table(frame: pd.DataFrame, transformer: TableTransformer) -> pd.DataFrame:
    """The scored columns, categories as text (Anonymeter tells categories from numbers by dtype) and numbers as
    floats, missing values as None / NaN."""
    out = {}
    for t in transformer.transforms_:
        column = frame[t.spec.name]
        if isinstance(t, CategoricalTransform):
            out[t.spec.name] = column.astype(object).where(column.notna(), None).map(
                lambda v: None if v is None else str(v))
        else:
            out[t.spec.name] = pd.to_numeric(column, errors="coerce").astype(np.float64)
    return pd.DataFrame(out).reset_index(drop=True)


def singling_out(ori: pd.DataFrame, syn: pd.DataFrame, control: pd.DataFrame, n_attacks: int, seed: int) -> Risk:
    """The multivariate singling-out risk (predicates drawn from synthetic rows with `seed`)."""
    from anonymeter.evaluators import SinglingOutEvaluator

    evaluator = SinglingOutEvaluator(ori, syn, n_attacks=n_attacks, n_cols=min(N_COLS, ori.shape[1]),
                                     control=control, seed=seed, max_attempts=50 * n_attacks)
    return Risk.of(evaluator.evaluate(mode="multivariate"))


def linkability(ori: pd.DataFrame, syn: pd.DataFrame, control: pd.DataFrame, n_attacks: int) -> Risk:
    """Linking the two halves of the columns of a training row through their nearest synthetic rows."""
    from anonymeter.evaluators import LinkabilityEvaluator

    columns = list(ori.columns)
    half = len(columns) // 2
    n = min(n_attacks, len(ori), len(control))
    evaluator = LinkabilityEvaluator(ori, syn, (columns[:half], columns[half:]), n_attacks=n, control=control)
    return Risk.of(evaluator.evaluate(n_jobs=1))


def inference(ori: pd.DataFrame, syn: pd.DataFrame, control: pd.DataFrame, n_attacks: int,
              transformer: TableTransformer, sensitive: list[str]) -> Risk:
    """The worst over the sensitive columns of guessing one from every other column."""
    from anonymeter.evaluators import InferenceEvaluator

    found = []
    for secret in sensitive:
        regression = not isinstance(transformer.transform_of(secret), CategoricalTransform)
        aux = [c for c in ori.columns if c != secret]
        evaluator = InferenceEvaluator(ori, syn, aux, secret, regression=regression, n_attacks=n_attacks,
                                       control=control)
        found.append(Risk.of(evaluator.evaluate(n_jobs=1)))
    return max(found, key=lambda r: (r.ci_high, r.value))


def anonymeter_risks(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame,
                     transformer: TableTransformer, sensitive: list[str], n_attacks: int = 500,
                     seed: int = 0) -> dict[str, float]:
    """This site's three risks and their upper confidence bounds (`<risk>` and `<risk>_ci_high`): the release
    attacked on its training rows, with its held-out rows as control. Without a sensitive column the inference
    risk is left out, with one column the linkability risk; without two training, held-out and synthetic rows
    every risk is NaN."""
    nan = float("nan")
    if len(train) < 2 or len(holdout) < 2 or len(synthetic) < 2:
        names = RISKS if sensitive else RISKS[:2]
        return {k: nan for name in names for k in (name, f"{name}_ci_high")}
    _cache_compiled_kernels()
    ori, control, syn = (_table(f, transformer) for f in (train, holdout, synthetic))
    n = min(n_attacks, len(ori), len(control))
    found: dict[str, Risk] = {}
    logger = logging.getLogger("anonymeter")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "could generate only k queries" on a small site: the risk says it
    try:
        with _seeded(seed), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "attack as good as baseline": expected for a safe release
            found["singling_out_risk"] = singling_out(ori, syn, control, n, seed)
            if ori.shape[1] >= 2:  # two halves to link
                found["linkability_risk"] = linkability(ori, syn, control, n)
            if sensitive:
                found["inference_risk"] = inference(ori, syn, control, n, transformer, sensitive)
    finally:
        logger.setLevel(level)
    return {k: v for name, risk in found.items() for k, v in ((name, risk.value), (f"{name}_ci_high", risk.ci_high))}
