"""Clinical fidelity: do synthetic patients live and die like real ones? (Kaplan-Meier, log-rank, Cox, C-index).

* Kaplan-Meier curves, real against synthetic, overall and per risk group, their largest gap, and a log-rank
  test: from counts of deaths and censorings on a shared time grid, summed over sites (exact up to the grid).
  The gap is read where the real curve is estimable: while at least `READ_WHILE_AT_RISK` of the real rows are
  still at risk (Pocock, Clayton & Altman, Lancet 2002, curtail a survival plot where 10-20% remain). Beyond
  that a handful of patients set the real curve: on WHAS500's 125 held-out rows the last one at risk dies, the
  real curve drops to 0, and every model's gap was that drop.
* Cox log hazard ratios of key covariates on synthetic and real held-out rows; the real ones are combined over
  sites by fixed-effect inverse-variance meta-analysis. The fit is lifelines' `CoxPHFitter(penalizer=0.01)`
  (Efron's ties, ridge on standardised covariates) computed in vectorised numpy: the same coefficients and
  standard errors (the tests compare them), ten times faster than lifelines' per-row loop.
* C-index of a Cox model trained on synthetic rows (TSTR) or on real training rows (TRTR), tested on real
  held-out rows. Choices and checks: docs/notes/evaluate.md.
* With a competing-risk event (codes 0 censored, 1, 2, ... one cause each), the cumulative incidence of every
  cause (Aalen-Johansen), real against synthetic, from per-cause counts on the same grid: Kaplan-Meier of any
  event alone would hide synthetic rows that swap one cause for another.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import chi2

from hpcsynth.comm import Communicator
from hpcsynth.evaluate.pooling import summed

N_INTERVALS = 200
READ_WHILE_AT_RISK = 0.10  # the gaps are read while this share of the real rows is still at risk


def time_grid(t_max: float, n: int = N_INTERVALS) -> np.ndarray:
    """Interval ends 0 < g_1 < ... < g_n = t_max (the shared transform's maximum time, the same on every site)."""
    return np.linspace(0.0, float(t_max), n + 1)[1:]


def interval_of(time: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The grid interval of each time: t in (g_{j-1}, g_j] is interval j, later times fall in the last."""
    return np.minimum(np.searchsorted(grid, time, side="left"), grid.size - 1)


def event_counts(time: np.ndarray, event: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(2, intervals) deaths and censorings per interval (t in (g_{j-1}, g_j]; later times in the last)."""
    ok = np.isfinite(time) & np.isfinite(event)
    idx = interval_of(time[ok], grid)
    died = event[ok] > 0.5
    return np.stack([np.bincount(idx[died], minlength=grid.size),
                     np.bincount(idx[~died], minlength=grid.size)]).astype(np.float64)


def at_risk(counts: np.ndarray) -> np.ndarray:
    """Patients at risk at the start of every interval."""
    leaving = counts.sum(axis=0)
    return leaving.sum() - np.concatenate([[0.0], np.cumsum(leaving)[:-1]])


def estimable(at_risk_: np.ndarray) -> np.ndarray:
    """The grid intervals where a real curve is read: at least `READ_WHILE_AT_RISK` of its rows at risk at the
    start (the first interval always: every row is at risk there)."""
    return at_risk_ >= READ_WHILE_AT_RISK * at_risk_[0]


def read_gap(real: np.ndarray, synthetic: np.ndarray, real_at_risk: np.ndarray) -> float:
    """The largest gap between a real and a synthetic curve on the grid, over the intervals where the real one is
    estimable."""
    return float(np.abs(real - synthetic)[estimable(real_at_risk)].max())


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


def cause_counts(frame: pd.DataFrame, time: str, event: str, causes: list[float], t_max: float) -> np.ndarray:
    """(1 + causes, intervals): censorings (code 0), then the events of each cause per interval of the shared grid:
    summable over sites. Rows whose code is missing or not a declared cause are left out."""
    grid = time_grid(t_max)
    t = pd.to_numeric(frame[time], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    e = pd.to_numeric(frame[event], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(t)
    idx = interval_of(t[ok], grid)
    return np.stack([np.bincount(idx[e[ok] == code], minlength=grid.size)
                     for code in (0.0, *causes)]).astype(np.float64)


def cumulative_incidence(counts: np.ndarray) -> np.ndarray:
    """(causes, intervals) Aalen-Johansen cumulative incidence of each cause at every grid point, from
    `cause_counts`: the sum over intervals of all-cause survival before the interval times the cause's hazard in
    it."""
    at_risk_ = at_risk(counts)
    events = counts[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        hazards = np.where(at_risk_ > 0, events / at_risk_, 0.0)
    survival = np.cumprod(1.0 - hazards.sum(0))
    before = np.concatenate([[1.0], survival[:-1]])
    return np.cumsum(before * hazards, axis=1)


def compare_incidence(synthetic: pd.DataFrame, real_counts: np.ndarray, time: str, event: str, causes: list[float],
                      t_max: float) -> dict[str, float]:
    """The largest gap between the real (`real_counts`: the held-out rows' `cause_counts` summed over sites) and
    the synthetic cumulative incidence of each cause, keyed by cause code, read where the real rows are
    estimable (`estimable`)."""
    real = cumulative_incidence(real_counts)
    syn = cumulative_incidence(cause_counts(synthetic, time, event, causes, t_max))
    n = at_risk(real_counts)
    return {f"{c:g}": read_gap(r, s, n) for c, r, s in zip(causes, real, syn)}


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
        The largest vertical gap between the curves per group, read while the group's real curve is estimable
        (`estimable`; NaN where a group has no rows).
    logrank_p : dict of str to float
        The log-rank test's p-value per group.
    sizes : dict of str to float
        The real held-out rows of each group, over all sites.
    read_until : dict of str to float
        The end of the last grid interval where each group's gap is read.
    """

    grid: np.ndarray
    real: dict[str, np.ndarray]
    synthetic: dict[str, np.ndarray]
    gaps: dict[str, float]
    logrank_p: dict[str, float]
    sizes: dict[str, float] = field(default_factory=dict)
    read_until: dict[str, float] = field(default_factory=dict)

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


def km_counts(frame: pd.DataFrame, time: str, event: str, t_max: float, group: str | None = None,
              levels: list[str] = ()) -> np.ndarray:
    """(1 + groups, 2, intervals) deaths and censorings of `frame` on the shared grid, overall then per group:
    summable over sites."""
    grid = time_grid(t_max)
    t = pd.to_numeric(frame[time], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    e = pd.to_numeric(frame[event], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    parts = [event_counts(t, e, grid)] + [event_counts(t[m], e[m], grid) for m in _groups(frame, group, levels)]
    return np.stack(parts)


def compare_km(synthetic: pd.DataFrame, holdout: pd.DataFrame, time: str, event: str, t_max: float,
               comm: Communicator, group: str | None = None, levels: list[str] = (),
               real: np.ndarray | None = None) -> KMComparison:
    """Kaplan-Meier real (pooled held-out rows, exact from summed counts) against synthetic, overall and by group
    (collective unless `real`, the held-out rows' `km_counts` summed over sites, is given)."""
    grid = time_grid(t_max)
    if real is None:
        real = summed(km_counts(holdout, time, event, t_max, group, levels), comm)
    syn = km_counts(synthetic, time, event, t_max, group, levels)
    names = ["all", *levels]
    result = KMComparison(grid, {}, {}, {}, {})
    for k, name in enumerate(names):
        result.sizes[name] = float(real[k].sum())
        if real[k].sum() == 0 or syn[k].sum() == 0:
            result.gaps[name], result.logrank_p[name] = float("nan"), float("nan")
            continue
        result.real[name], result.synthetic[name] = km_from_counts(real[k]), km_from_counts(syn[k])
        n = at_risk(real[k])
        result.gaps[name] = read_gap(result.real[name], result.synthetic[name], n)
        result.read_until[name] = float(grid[estimable(n)].max())
        result.logrank_p[name] = logrank_from_counts(real[k], syn[k])[1]
    return result


PENALIZER = 0.01  # ridge penalty of every Cox fit (lifelines' `penalizer`, on standardised covariates)


@dataclass(frozen=True)
class CoxFit:
    """A fitted Cox model: log hazard ratios and standard errors of the covariates it kept, and their means.

    Parameters
    ----------
    covariates : list of str
        The covariates fitted (those of the frame with some variance).
    params, se : ndarray
        Log hazard ratios and their standard errors, on the covariates' own scale.
    mean : ndarray
        The covariates' means on the rows fitted: the linear predictor is centred on them, as lifelines does.
    """

    covariates: list[str]
    params: np.ndarray
    se: np.ndarray
    mean: np.ndarray

    def log_partial_hazard(self, frame: pd.DataFrame) -> np.ndarray:
        """(x - mean) . beta of every row of `frame` (lifelines' `predict_log_partial_hazard`)."""
        x = frame[self.covariates].to_numpy(dtype=np.float64)
        return (x - self.mean) @ self.params


def _efron(x: np.ndarray, time: np.ndarray, died: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                          float]:
    """(Hessian, gradient, log-likelihood) of the Cox partial likelihood with Efron's ties at `beta`; rows sorted
    by time. Vectorised over rows: the sums over a risk set are cumulative sums over the distinct times, from
    the last back."""
    phi = np.exp(x @ beta)
    phi_x = phi[:, None] * x
    phi_xx = phi_x[:, :, None] * x[:, None, :]
    starts = np.flatnonzero(np.r_[True, time[1:] != time[:-1]])  # first row of every distinct time
    at_risk = [np.flip(np.cumsum(np.flip(np.add.reduceat(a, starts, axis=0), 0), axis=0), 0)
               for a in (phi, phi_x, phi_xx)]
    # the deaths, grouped by their (distinct) time: rows are sorted, so a time's deaths are neighbours
    dead = np.flatnonzero(died)
    group = np.searchsorted(starts, dead, side="right") - 1
    first = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    times, deaths = group[first], np.diff(np.r_[first, dead.size])
    tied = [np.add.reduceat(a[dead], first, axis=0) for a in (phi, phi_x, phi_xx)]
    # one term per death: at a time with m tied deaths, the l-th (l = 0..m-1) removes l/m of the tied deaths' sums
    which = np.repeat(np.arange(times.size), deaths)
    share = (np.arange(dead.size) - first[which]) / deaths[which]
    s0 = at_risk[0][times][which] - share * tied[0][which]
    s1 = at_risk[1][times][which] - share[:, None] * tied[1][which]
    s2 = at_risk[2][times][which] - share[:, None, None] * tied[2][which]
    mean_x = s1 / s0[:, None]
    x_dead = x[dead].sum(axis=0)
    gradient = x_dead - mean_x.sum(axis=0)
    hessian = mean_x.T @ mean_x - np.einsum("kij,k->ij", s2, 1.0 / s0)
    log_lik = float(x_dead @ beta - np.log(s0).sum())
    return hessian, gradient, log_lik


def _newton(x: np.ndarray, time: np.ndarray, died: np.ndarray, penalizer: float) -> tuple[np.ndarray, np.ndarray]:
    """(beta, penalised Hessian at beta) of the ridge-penalised Efron partial likelihood, by lifelines'
    Newton-Raphson: the same start (0), step-size rule (`lifelines.utils.StepSizer`), penalty
    (n * penalizer * |beta|^2 / 2) and stopping tests, so both stop at the same iterate wherever lifelines'
    steps raise the likelihood. Unlike lifelines, a step that lowers it is halved from the last iterate
    (backtracking): with covariates many standard deviations out (flchain's kappa and lambda reach 20), the
    quadratic model overshoots, and lifelines' iterates then run off to a fit with the signs reversed (a C-index
    of 0.2 on flchain's training rows). Raises `np.linalg.LinAlgError` when the Hessian is singular."""
    from scipy.linalg import solve

    n, d = x.shape
    beta, delta = np.zeros(d), np.zeros(d)
    step, initial, norms, temper = 0.95, 0.95, [], False
    previous_ll, i = 0.0, 0
    while True:
        i += 1
        candidate = beta + step * delta
        h, g, ll = _efron(x, time, died, candidate)
        ll -= 0.5 * n * penalizer * float(candidate @ candidate)
        if previous_ll != 0 and ll < previous_ll and step > 1e-5 and i < 500:
            step *= 0.5  # backtrack: the step overshot the maximum
            continue
        beta = candidate
        g = g - n * penalizer * beta
        h[np.diag_indices(d)] -= n * penalizer
        delta = solve(-h, g, assume_a="pos", check_finite=False)
        if not np.all(np.isfinite(delta)):
            raise np.linalg.LinAlgError("Newton step is not finite")
        norm_delta = float(np.linalg.norm(delta))
        if (norm_delta < 1e-7 or (previous_ll != 0 and abs(ll - previous_ll) / -previous_ll < 1e-9)
                or g @ delta / 2 < 1e-7 or i >= 500 or step <= 1e-5 or (abs(ll) < 1e-4 and norm_delta > 1.0)):
            return beta, h
        previous_ll = ll
        norms.append(norm_delta)  # lifelines' StepSizer
        if temper:
            step = min(step * 1.3, initial)
        if norm_delta >= 15.0:
            step, temper = step * 0.1, True
        elif norm_delta > 5.0:
            step, temper = step * 0.25, True
        if len(norms) >= 3:
            step = min(step * 1.3, 1.0) if np.all(np.diff(norms[-3:]) < 0) else step * 0.98


def _cox(frame: pd.DataFrame, covariates: list[str], time: str, event: str) -> CoxFit | None:
    """The ridge-penalised (`PENALIZER`) Cox model with Efron's ties, fitted as lifelines' `CoxPHFitter` fits it
    (covariates standardised, Newton-Raphson from 0, standard errors from the penalised Hessian) in a few
    vectorised numpy steps instead of its per-row loop; the tests hold it to lifelines' coefficients and standard
    errors. None when the rows cannot support a fit (fewer than 10, fewer than 2 events, or a singular Hessian)."""
    data = frame[[*covariates, time, event]].apply(pd.to_numeric, errors="coerce").dropna()
    data = data.loc[:, data.std() > 0] if len(data) else data
    if time not in data or event not in data or len(data) < 10 or data[event].sum() < 2:
        return None
    used = [c for c in covariates if c in data]
    data = data.sort_values([time, event])
    x = data[used].to_numpy(dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0, ddof=1)
    try:
        beta, hessian = _newton((x - mean) / std, data[time].to_numpy(dtype=np.float64),
                                data[event].to_numpy() != 0, PENALIZER)
        variance = -np.linalg.inv(hessian) / np.outer(std, std)
    except np.linalg.LinAlgError:
        return None
    return CoxFit(used, beta / std, np.sqrt(np.diag(variance)), mean)


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
            if c in fit.covariates:
                j = fit.covariates.index(c)
                beta[k], se[k] = fit.params[j], fit.se[j]
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
    data = test[[*fit.covariates, time, event]].apply(pd.to_numeric, errors="coerce").dropna()
    if len(data) < 2 or data[event].sum() < 1:
        return float("nan")
    risk = np.exp(fit.log_partial_hazard(data))
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
    used = model.covariates
    reference = censoring[[time, event]].apply(pd.to_numeric, errors="coerce").dropna()
    data = test[[*used, time, event]].apply(pd.to_numeric, errors="coerce").dropna()
    data = data[data[time] <= reference[time].max()] if len(reference) else data.iloc[:0]
    live = [k for k, h in enumerate(at) if len(data) > 1 and _scorable(data, time, event, h)]
    if not live:
        return out
    risk = model.log_partial_hazard(data)
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
