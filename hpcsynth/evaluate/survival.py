"""Clinical fidelity: do synthetic patients live and die like real ones? (Kaplan-Meier, log-rank, Cox, C-index).

* Kaplan-Meier curves, real against synthetic, overall and per risk group, their largest gap, and a log-rank
  test: from counts of deaths and censorings on a shared time grid, summed over sites (exact up to the grid).
* Cox log hazard ratios of key covariates (lifelines) on synthetic and real held-out rows; the real ones are
  combined over sites by fixed-effect inverse-variance meta-analysis.
* C-index of a Cox model trained on synthetic rows (TSTR) or on real training rows (TRTR), tested on real
  held-out rows. Choices and checks: docs/notes/evaluate.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import chi2

from hpcsynth.comm import Communicator
from hpcsynth.evaluate.pooling import summed

N_INTERVALS = 200


def time_grid(t_max: float, n: int = N_INTERVALS) -> np.ndarray:
    """Interval ends 0 < g_1 < ... < g_n = t_max (the shared transform's maximum time, the same on every site)."""
    return np.linspace(0.0, float(t_max), n + 1)[1:]


def event_counts(time: np.ndarray, event: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(2, intervals) deaths and censorings per interval (t in (g_{j-1}, g_j]; later times in the last)."""
    ok = np.isfinite(time) & np.isfinite(event)
    idx = np.minimum(np.searchsorted(grid, time[ok], side="left"), grid.size - 1)
    died = event[ok] > 0.5
    return np.stack([np.bincount(idx[died], minlength=grid.size),
                     np.bincount(idx[~died], minlength=grid.size)]).astype(np.float64)


def at_risk(counts: np.ndarray) -> np.ndarray:
    """Patients at risk at the start of every interval."""
    leaving = counts.sum(axis=0)
    return leaving.sum() - np.concatenate([[0.0], np.cumsum(leaving)[:-1]])


def km_from_counts(counts: np.ndarray) -> np.ndarray:
    """Kaplan-Meier survival at every grid point."""
    n = at_risk(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(n > 0, 1.0 - counts[0] / n, 1.0)
    return np.cumprod(factor)


def logrank_from_counts(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(chi-square statistic, p-value) of the two-group log-rank test from per-interval counts."""
    n1, n2 = at_risk(a), at_risk(b)
    d1, d = a[0], a[0] + b[0]
    n = n1 + n2
    live = (n > 1) & (d > 0)
    expected = np.sum(d[live] * n1[live] / n[live])
    var = np.sum(d[live] * n1[live] * n2[live] * (n[live] - d[live]) / (n[live] ** 2 * (n[live] - 1)))
    if var <= 0:
        return 0.0, 1.0
    stat = float((d1[live].sum() - expected) ** 2 / var)
    return stat, float(chi2.sf(stat, 1))


@dataclass
class KMComparison:
    """Kaplan-Meier curves, real against synthetic, overall ("all") and per risk group.

    Parameters
    ----------
    grid : ndarray
        The shared time grid.
    real, synthetic : dict of str to ndarray
        Survival on the grid per group.
    gaps : dict of str to float
        The largest vertical gap between the curves per group (NaN where a group has no rows).
    logrank_p : dict of str to float
        The log-rank test's p-value per group.
    sizes : dict of str to float
        The real held-out rows of each group, over all sites.
    """

    grid: np.ndarray
    real: dict[str, np.ndarray]
    synthetic: dict[str, np.ndarray]
    gaps: dict[str, float]
    logrank_p: dict[str, float]
    sizes: dict[str, float] = field(default_factory=dict)

    @property
    def worst_group(self) -> str | None:
        """The risk group with the largest gap (None without groups)."""
        groups = {g: v for g, v in self.gaps.items() if g != "all" and np.isfinite(v)}
        return max(groups, key=groups.get) if groups else None


def _groups(frame: pd.DataFrame, column: str | None, levels: list[str]) -> list[np.ndarray]:
    if column is None:
        return []
    values = frame[column].astype(object).to_numpy()
    return [values == level for level in levels]


def compare_km(synthetic: pd.DataFrame, holdout: pd.DataFrame, time: str, event: str, t_max: float,
               comm: Communicator, group: str | None = None, levels: list[str] = ()) -> KMComparison:
    """Kaplan-Meier real (pooled held-out rows, exact from summed counts) against synthetic, overall and by group."""
    grid = time_grid(t_max)

    def counts(frame: pd.DataFrame) -> np.ndarray:
        t = pd.to_numeric(frame[time], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        e = pd.to_numeric(frame[event], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        parts = [event_counts(t, e, grid)] + [event_counts(t[m], e[m], grid) for m in _groups(frame, group, levels)]
        return np.stack(parts)

    real, syn = summed(counts(holdout), comm), counts(synthetic)
    names = ["all", *levels]
    result = KMComparison(grid, {}, {}, {}, {})
    for k, name in enumerate(names):
        result.sizes[name] = float(real[k].sum())
        if real[k].sum() == 0 or syn[k].sum() == 0:
            result.gaps[name], result.logrank_p[name] = float("nan"), float("nan")
            continue
        result.real[name], result.synthetic[name] = km_from_counts(real[k]), km_from_counts(syn[k])
        result.gaps[name] = float(np.abs(result.real[name] - result.synthetic[name]).max())
        result.logrank_p[name] = logrank_from_counts(real[k], syn[k])[1]
    return result


def _cox(frame: pd.DataFrame, covariates: list[str], time: str, event: str):
    from lifelines import CoxPHFitter

    data = frame[[*covariates, time, event]].apply(pd.to_numeric, errors="coerce").dropna()
    data = data.loc[:, data.std() > 0] if len(data) else data
    if time not in data or event not in data or len(data) < 10 or data[event].sum() < 2:
        return None
    return CoxPHFitter(penalizer=0.01).fit(data, duration_col=time, event_col=event)


@dataclass
class CoxComparison:
    """Cox log hazard ratios, real (inverse-variance pooled over sites) against synthetic.

    Parameters
    ----------
    covariates : list of str
        The covariates of the model.
    real_log_hr, real_se : ndarray
        The real log hazard ratios and their standard errors.
    synthetic_log_hr : ndarray
        The log hazard ratios fitted on the synthetic rows.
    """

    covariates: list[str]
    real_log_hr: np.ndarray
    real_se: np.ndarray
    synthetic_log_hr: np.ndarray

    def scores(self) -> dict[str, float]:
        """cox_hr_in_ci: share of covariates whose synthetic hazard ratio lies in the real 95% interval;
        cox_log_hr_mae: mean |log HR_real - log HR_syn|."""
        ok = np.isfinite(self.real_log_hr) & np.isfinite(self.synthetic_log_hr)
        if not ok.any():
            return {"cox_hr_in_ci": float("nan"), "cox_log_hr_mae": float("nan")}
        inside = np.abs(self.synthetic_log_hr - self.real_log_hr) <= 1.96 * self.real_se
        return {"cox_hr_in_ci": float(inside[ok].mean()),
                "cox_log_hr_mae": float(np.abs(self.synthetic_log_hr - self.real_log_hr)[ok].mean())}


def cox_coefficients(frame: pd.DataFrame, covariates: list[str], time: str,
                  event: str) -> tuple[np.ndarray, np.ndarray]:
    """Cox log hazard ratios and standard errors of `covariates` (NaN where the fit leaves one out)."""
    fit = _cox(frame, covariates, time, event)
    beta, se = np.full(len(covariates), np.nan), np.full(len(covariates), np.nan)
    if fit is not None:
        for k, c in enumerate(covariates):
            if c in fit.params_.index:
                beta[k], se[k] = fit.params_[c], fit.standard_errors_[c]
    return beta, se


def pooled_real_cox(holdout: pd.DataFrame, covariates: list[str], time: str, event: str,
                    comm: Communicator) -> tuple[np.ndarray, np.ndarray]:
    """The real log hazard ratios and standard errors, every site's fit on its held-out rows combined by
    inverse-variance meta-analysis (collective)."""
    beta, se = cox_coefficients(holdout, covariates, time, event)
    ok = np.isfinite(beta) & np.isfinite(se) & (se > 0)
    w = np.where(ok, 1.0 / np.where(ok, se, 1.0) ** 2, 0.0)
    pooled = summed(np.concatenate([np.where(ok, w * beta, 0.0), w]), comm)
    sw = pooled[len(covariates):]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sw > 0, pooled[:len(covariates)] / sw, np.nan), np.where(sw > 0, 1.0 / np.sqrt(sw), np.nan)


def compare_cox(synthetic: pd.DataFrame, holdout: pd.DataFrame, covariates: list[str], time: str, event: str,
                comm: Communicator, real: tuple[np.ndarray, np.ndarray] | None = None) -> CoxComparison:
    """Cox log hazard ratios, synthetic against real (collective unless `real`, the result of `pooled_real_cox`,
    is given: it does not change from one synthetic table to the next)."""
    real_beta, real_se = real if real is not None else pooled_real_cox(holdout, covariates, time, event, comm)
    return CoxComparison(list(covariates), real_beta, real_se, cox_coefficients(synthetic, covariates, time, event)[0])


def c_index(train: pd.DataFrame, test: pd.DataFrame, covariates: list[str], time: str, event: str) -> float:
    """Harrell's C on `test` of a Cox model fitted on `train` (NaN when either cannot support it)."""
    from lifelines.utils import concordance_index

    fit = _cox(train, covariates, time, event)
    if fit is None:
        return float("nan")
    used = list(fit.params_.index)
    data = test[[*used, time, event]].apply(pd.to_numeric, errors="coerce").dropna()
    if len(data) < 2 or data[event].sum() < 1:
        return float("nan")
    risk = fit.predict_partial_hazard(data[used]).to_numpy()
    return float(concordance_index(data[time], -risk, data[event]))



HORIZON_YEARS = (1.0, 3.0, 5.0)
PER_YEAR = {"days": 365.25, "months": 12.0, "years": 1.0}
EVENT_QUANTILES = (0.25, 0.5, 0.75)


def horizons(time_unit: str | None, event_times: np.ndarray) -> np.ndarray:
    """The times at which the time-dependent AUROC is read: 1, 3 and 5 years in the time column's unit, or,
    without a unit, the 25/50/75% quantiles of `event_times` (NaN where there are none)."""
    if time_unit is not None:
        return np.asarray(HORIZON_YEARS) * PER_YEAR[time_unit]
    finite = event_times[np.isfinite(event_times)]
    return np.quantile(finite, EVENT_QUANTILES) if finite.size else np.full(len(EVENT_QUANTILES), np.nan)


def _outcome(frame: pd.DataFrame, time: str, event: str) -> np.ndarray:
    """scikit-survival's structured (event, time) array."""
    from sksurv.util import Surv

    return Surv.from_arrays(frame[event].to_numpy() > 0.5, frame[time].to_numpy(dtype=np.float64))


def _scorable(test: pd.DataFrame, time: str, event: str, horizon: float) -> bool:
    """A horizon inside the test rows' follow-up with an event before it and a row still at risk after it."""
    t, died = test[time].to_numpy(), test[event].to_numpy() > 0.5
    return bool(np.isfinite(horizon) and t.min() <= horizon < t.max() and (died & (t <= horizon)).any())


def td_auroc(train: pd.DataFrame, censoring: pd.DataFrame, test: pd.DataFrame, covariates: list[str], time: str,
             event: str, at: np.ndarray) -> np.ndarray:
    """Cumulative/dynamic AUROC(t) (scikit-survival) at every time of `at` of a Cox model fitted on `train`, its
    linear predictor scored on `test`. The censoring distribution comes from `censoring` (sksurv's
    `survival_train`: the site's own training rows), so test rows after its last time are left out. NaN where a
    time lies outside the follow-up or has no event before it, and everywhere when `train` cannot support a Cox
    model or sksurv cannot weigh the test rows."""
    from sksurv.metrics import cumulative_dynamic_auc

    out = np.full(len(at), np.nan)
    model = _cox(train, covariates, time, event)
    if model is None:
        return out
    used = list(model.params_.index)
    reference = censoring[[time, event]].apply(pd.to_numeric, errors="coerce").dropna()
    data = test[[*used, time, event]].apply(pd.to_numeric, errors="coerce").dropna()
    data = data[data[time] <= reference[time].max()] if len(reference) else data.iloc[:0]
    live = [k for k, h in enumerate(at) if len(data) > 1 and _scorable(data, time, event, h)]
    if not live:
        return out
    risk = model.predict_log_partial_hazard(data[used]).to_numpy()
    try:
        out[live] = cumulative_dynamic_auc(_outcome(reference, time, event), _outcome(data, time, event), risk,
                                           np.asarray(at)[live])[0]
    except ValueError:  # the censoring distribution is zero at an event time of the test rows
        pass
    return out



def constraint_violations(time: np.ndarray, event_declared: np.ndarray, t_max: float) -> dict[str, int]:
    """Rows that break a survival constraint, per kind and in all (a row breaking two counts once): a time that
    is missing or not positive, a time after the cohort's maximum follow-up `t_max` (a public bound: the scoring
    transform's), an event that is not one of the declared levels (`event_declared` False)."""
    with np.errstate(invalid="ignore"):
        not_positive = ~(time > 0)
        after = time > t_max
    kinds = {"time <= 0": not_positive, "time > follow-up": after, "event not declared": ~event_declared}
    counts = {kind: int(rows.sum()) for kind, rows in kinds.items()}
    return {"rows": int((not_positive | after | ~event_declared).sum()), **counts}
