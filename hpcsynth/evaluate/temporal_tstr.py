"""Temporal utility: does a model trained on synthetic histories predict real patients' next visit?

For every visit after a patient's first where a lab is measured, the features are what was known before it: the
context, the visit's number and time since entry, the days since the previous visit, and per lab the last measured
value, the mean of the earlier measurements and how many there were. The target is the lab's value at the visit. A
gradient-boosting regressor (the detection classifier's size and settings) is trained on the synthetic
patients and tested on the real held-out ones (TSTR); beside it the same model trained on real patients (TRTR:
the training patients when given, else the held-out patients in two folds split by patient, each half predicted
by a model of the other). The score is R^2 on the real visits, averaged over labs; a release whose values do not
follow from a patient's history (iid visits, shuffled order) predicts no better than the mean (R^2 near 0) where
real histories predict well.

Federated like the project's TSTR: each site tests on its own held-out patients; R^2 is averaged over sites
weighted by held-out patients.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.data.sequences import Sequences
from hpcsynth.evaluate.detection import ITERATIONS, LEARNING_RATE
from hpcsynth.evaluate.encoding import BoostedTrees
from hpcsynth.evaluate.pooling import weighted_mean
from hpcsynth.evaluate.trajectories import categorical_context


def history_features(seqs: Sequences, labs: list[str], levels: dict[str, list[str]]) -> pd.DataFrame:
    """One row per visit (in the order of `visits`): the context (categories as codes over `levels`), `visit`
    (0 for the first), `day`, `gap` (NaN at the first visit) and per lab `<lab>_last`, `<lab>_mean`, `<lab>_n` of
    the measurements before the visit."""
    v, key = seqs.visits, seqs.key
    g = v.groupby(key, sort=False)
    day = pd.to_numeric(v[seqs.index], errors="coerce").astype(float)
    out = pd.DataFrame({"visit": g.cumcount().to_numpy(), "day": day.to_numpy(),
                        "gap": day.groupby(v[key].to_numpy()).diff().to_numpy()}, index=v.index)
    for lab in labs:
        x = pd.to_numeric(v[lab], errors="coerce").astype(float)
        earlier = x.groupby(v[key].to_numpy()).shift(1)
        out[f"{lab}_last"] = earlier.groupby(v[key].to_numpy()).ffill()
        n = earlier.notna().astype(float).groupby(v[key].to_numpy()).cumsum()
        total = earlier.fillna(0.0).groupby(v[key].to_numpy()).cumsum()
        out[f"{lab}_mean"] = (total / n).where(n > 0)
        out[f"{lab}_n"] = n
    context = seqs.context.set_index(key)
    for column in context.columns:
        values = context[column].reindex(v[key].to_numpy()).to_numpy()
        if column in levels:
            codes = pd.Categorical(pd.Series(values, dtype="string"), categories=levels[column]).codes
            values = np.where(codes < 0, len(levels[column]), codes)
        out[column] = values
    return out


def _samples(seqs: Sequences, lab: str, labs: list[str], levels: dict[str, list[str]]):
    """(features, target, patient) of the visits after the first where `lab` is measured."""
    features = history_features(seqs, labs, levels)
    y = pd.to_numeric(seqs.visits[lab], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    keep = np.isfinite(y) & (features["visit"].to_numpy() > 0)
    return (features.to_numpy(dtype=np.float64, na_value=np.nan)[keep], y[keep],
            seqs.visits[seqs.key].to_numpy()[keep], np.array([c in levels for c in features.columns]))


def _fit_predict(x_fit: np.ndarray, y_fit: np.ndarray, x: np.ndarray, categorical: np.ndarray,
                 seed: int) -> np.ndarray:
    """The regressor's predictions for `x`, fitted on the rows given."""
    return BoostedTrees(categorical, seed, ITERATIONS, LEARNING_RATE, regression=True).fit(x_fit, y_fit).predict(x)


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import r2_score

    return float(r2_score(y, pred)) if y.size >= 2 else float("nan")


def site_next_visit(real: Sequences, synthetic: Sequences, labs: list[str], train: Sequences | None = None,
                    seed: int = 0) -> dict[str, float]:
    """{`temporal_tstr_r2`, `temporal_trtr_r2`} on this site's held-out patients, averaged over labs (NaN where
    fewer than two test visits or training visits exist)."""
    frames = [real, synthetic] + ([train] if train is not None else [])
    levels = {c: sorted({str(x) for f in frames for x in f.context[c].dropna()}) for c in categorical_context(real)}
    tstr, trtr = [], []
    for lab in labs:
        x, y, patient, categorical = _samples(real, lab, labs, levels)
        xs, ys, _, _ = _samples(synthetic, lab, labs, levels)
        if y.size < 2:
            continue
        tstr.append(_r2(y, _fit_predict(xs, ys, x, categorical, seed)) if ys.size >= 2 else np.nan)
        if train is not None:
            xt, yt, _, _ = _samples(train, lab, labs, levels)
            trtr.append(_r2(y, _fit_predict(xt, yt, x, categorical, seed)) if yt.size >= 2 else np.nan)
            continue
        half = np.isin(patient, np.unique(patient)[np.random.default_rng(seed).permutation(np.unique(patient).size)
                                                   % 2 == 0])
        pred = np.full(y.size, np.nan)
        for fold in (half, ~half):
            if fold.all() or not fold.any():
                break
            pred[fold] = _fit_predict(x[~fold], y[~fold], x[fold], categorical, seed)
        trtr.append(_r2(y, pred) if np.isfinite(pred).all() else np.nan)

    def mean(values: list[float]) -> float:
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    return {"temporal_tstr_r2": mean(tstr), "temporal_trtr_r2": mean(trtr)}


def next_visit_utility(real: Sequences, synthetic: Sequences, labs: list[str], comm: Communicator | None = None,
                       train: Sequences | None = None, seed: int = 0) -> dict[str, float]:
    """TSTR and TRTR R^2 of the next visit's labs, averaged over sites weighted by held-out patients
    (collective)."""
    return weighted_mean(site_next_visit(real, synthetic, labs, train, seed), real.n_patients, comm or SoloComm())
