"""Kaplan-Meier, log-rank, Cox, C-index and cumulative incidence against lifelines; site counts give the pooled
curves exactly."""
import numpy as np
import pandas as pd
import pytest
from lifelines import AalenJohansenFitter, CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import logrank_test

from hpcsynth.comm import SoloComm
from hpcsynth.evaluate.survival import (
    c_index,
    cause_counts,
    compare_cox,
    compare_incidence,
    compare_km,
    cumulative_incidence,
    event_counts,
    km_from_counts,
    logrank_from_counts,
    time_grid,
)


def _cohort(n, seed, scale=20.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = np.ceil(rng.exponential(scale * np.exp(-0.5 * x)) * 2) / 2  # half-months: on the grid below
    t = np.clip(t, 0.5, 100.0)
    return pd.DataFrame({"x": x, "t": t, "e": (rng.random(n) < 0.7).astype(float),
                         "g": rng.choice(["low", "high"], n)})


def test_km_and_logrank_equal_lifelines_when_times_are_on_the_grid():
    a, b = _cohort(300, 0), _cohort(250, 1, scale=14.0)
    grid = time_grid(100.0)  # 200 intervals of half a month
    ca, cb = (event_counts(f["t"].to_numpy(), f["e"].to_numpy(), grid) for f in (a, b))
    km = KaplanMeierFitter().fit(a["t"], a["e"])
    assert np.allclose(km_from_counts(ca), km.survival_function_at_times(grid).to_numpy(), atol=1e-12)
    expected = logrank_test(a["t"], b["t"], a["e"], b["e"])
    stat, p = logrank_from_counts(ca, cb)
    assert stat == pytest.approx(expected.test_statistic, rel=1e-9) and p == pytest.approx(expected.p_value, rel=1e-6)


def test_cumulative_incidence_equals_lifelines_aalen_johansen():
    # one row per grid interval at most, so the binned counts are the exact event times' (and lifelines has no
    # ties to jitter)
    rng = np.random.default_rng(0)
    grid = time_grid(100.0)
    times = grid[np.sort(rng.choice(grid.size, 150, replace=False))] - 0.1
    codes = rng.choice([0, 1, 2], 150, p=[0.3, 0.45, 0.25])
    frame = pd.DataFrame({"t": times, "e": codes})
    ours = cumulative_incidence(cause_counts(frame, "t", "e", [1.0, 2.0], 100.0))
    for row, cause in enumerate((1, 2)):
        theirs = AalenJohansenFitter(calculate_variance=False).fit(frame["t"], frame["e"], event_of_interest=cause)
        expected = theirs.cumulative_density_.iloc[:, 0].reindex(grid, method="ffill").fillna(0.0).to_numpy()
        assert np.allclose(ours[row], expected, atol=1e-12)
    # without competing events the cumulative incidence is one minus Kaplan-Meier
    binary = frame.assign(e=(frame["e"] > 0).astype(float))
    assert np.allclose(cumulative_incidence(cause_counts(binary, "t", "e", [1.0], 100.0))[0],
                       1.0 - km_from_counts(event_counts(times, binary["e"].to_numpy(), grid)), atol=1e-12)


def test_km_gaps_by_group_and_split_sites_equal_pooled(sites):
    real, synthetic = _cohort(600, 2), _cohort(400, 3, scale=10.0)
    pooled = compare_km(synthetic, real, "t", "e", 100.0, SoloComm(), "g", ["high", "low"])
    assert pooled.gaps["all"] > 0.05 and pooled.logrank_p["all"] < 0.05
    assert compare_km(real, real, "t", "e", 100.0, SoloComm()).gaps["all"] == 0.0
    parts = np.array_split(np.arange(len(real)), 3)
    for got in sites(lambda comm, k: compare_km(synthetic, real.iloc[parts[k]], "t", "e", 100.0, comm, "g",
                                                ["high", "low"]), 3):
        assert got.gaps == pytest.approx(pooled.gaps, abs=1e-12) and got.worst_group == pooled.worst_group


def test_gaps_are_read_while_a_tenth_of_the_real_rows_is_at_risk():
    """A real cohort whose last patient dies at 90 (its curve drops to 0 there): a synthetic one that differs
    only after the real curve has lost nine in ten of its rows has gap 0, one that differs before has its gap."""
    rng = np.random.default_rng(7)
    t = np.r_[np.ceil(rng.uniform(1, 60, 180)), np.ceil(rng.uniform(61, 89, 19)), 90.0]
    real = pd.DataFrame({"t": t, "e": np.r_[(rng.random(199) < 0.25).astype(float), 1.0]})
    censored_last = real.assign(e=np.r_[real["e"].to_numpy()[:-1], 0.0])  # the last patient survives instead
    km = compare_km(censored_last, real, "t", "e", 100.0, SoloComm())
    assert km.gaps["all"] == 0.0 and km.read_until["all"] < 70.0
    plain = np.abs(km.real["all"] - km.synthetic["all"]).max()  # over the whole grid: the tail drop
    assert plain > 0.1
    earlier = real.assign(t=np.where(real["t"] <= 30, real["t"] / 2, real["t"]))
    assert compare_km(earlier, real, "t", "e", 100.0, SoloComm()).gaps["all"] > 0.1
    # the cumulative incidence reads the same range: a cause swapped at the last row only is not read
    causes = real.assign(e=real["e"] * np.where(np.arange(200) % 2, 1.0, 2.0))
    swapped = causes.assign(e=np.r_[causes["e"].to_numpy()[:-1], 1.0 if causes["e"].iloc[-1] == 2.0 else 2.0])
    real_counts = cause_counts(causes, "t", "e", [1.0, 2.0], 100.0)
    assert max(compare_incidence(swapped, real_counts, "t", "e", [1.0, 2.0], 100.0).values()) == 0.0


def test_cox_in_one_process_equals_lifelines_and_meta_analysis_across_sites(sites):
    real, synthetic = _cohort(900, 4), _cohort(900, 5)
    cox = compare_cox(synthetic, real, ["x"], "t", "e", SoloComm())
    fit = CoxPHFitter(penalizer=0.01).fit(real[["x", "t", "e"]], "t", "e")
    assert cox.real_log_hr[0] == pytest.approx(fit.params_["x"])
    assert cox.real_se[0] == pytest.approx(fit.standard_errors_["x"])
    assert cox.scores()["cox_hr_in_ci"] == 1.0  # same generating model
    parts = np.array_split(np.arange(len(real)), 3)
    fits = [CoxPHFitter(penalizer=0.01).fit(real.iloc[p][["x", "t", "e"]], "t", "e") for p in parts]
    w = np.array([1 / f.standard_errors_["x"] ** 2 for f in fits])
    expected = np.sum(w * [f.params_["x"] for f in fits]) / w.sum()
    for got in sites(lambda comm, k: compare_cox(synthetic, real.iloc[parts[k]], ["x"], "t", "e", comm), 3):
        assert got.real_log_hr[0] == pytest.approx(expected) and got.real_se[0] == pytest.approx(w.sum() ** -0.5)


def test_c_index_of_a_model_fitted_on_synthetic_rows():
    from lifelines.utils import concordance_index

    train, test = _cohort(500, 6), _cohort(300, 7)
    fit = CoxPHFitter(penalizer=0.01).fit(train[["x", "t", "e"]], "t", "e")
    expected = concordance_index(test["t"], -fit.predict_partial_hazard(test[["x"]]), test["e"])
    assert c_index(train, test, ["x"], "t", "e") == pytest.approx(expected) and expected > 0.6


@pytest.mark.parametrize("seed", range(6))
def test_cox_fit_equals_lifelines_with_ties_and_several_covariates(seed):
    """The vectorised Newton fit stops where lifelines' does: the same coefficients, standard errors and linear
    predictor, on continuous and binary covariates of different scales, with and without tied times."""
    from hpcsynth.evaluate.survival import _cox

    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(60, 900)), int(rng.integers(1, 6))
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 50, d) + rng.normal(size=d) * 10
    x[:, 0] = rng.integers(0, 2, n) if seed % 3 == 0 else x[:, 0]
    t = rng.exponential(20 * np.exp(-x @ (rng.normal(size=d) / x.std(0))))
    t = np.ceil(t) if seed % 2 else t  # whole months: many tied times
    frame = pd.DataFrame(x, columns=[f"c{k}" for k in range(d)]).assign(t=t, e=(rng.random(n) < 0.6) * 1.0)
    covariates = [f"c{k}" for k in range(d)]
    expected = CoxPHFitter(penalizer=0.01).fit(frame, "t", "e")
    got = _cox(frame, covariates, "t", "e")
    assert got.covariates == covariates
    assert np.allclose(got.params, expected.params_[covariates], rtol=1e-9, atol=1e-12)
    assert np.allclose(got.se, expected.standard_errors_[covariates], rtol=1e-9, atol=1e-12)
    assert np.allclose(got.log_partial_hazard(frame), expected.predict_log_partial_hazard(frame), atol=1e-9)


def test_a_step_that_lowers_the_likelihood_is_halved_where_lifelines_runs_off():
    """On flchain's training rows (kappa and lambda reach 20 standard deviations), a full Newton step overshoots
    and lifelines' iterates settle on reversed signs: its model ranks the held-out patients backwards (C about
    0.2). The backtracking fit keeps raising the likelihood and ranks them as a Cox model should."""
    from lifelines.utils import concordance_index

    from hpcsynth.config import from_dict
    from hpcsynth.data.sources import load_site
    from hpcsynth.evaluate.survival import _cox

    cfg = from_dict({"data": {"builtin": "flchain"}, "federation": {"strategy": "centralized"}})
    site = load_site(cfg.data, None, 1, 0)
    covariates = ["age", "creatinine", "kappa", "lambda"]
    train = site.train[[*covariates, "futime", "death"]].dropna()
    test = site.holdout[[*covariates, "futime", "death"]].dropna()
    runaway = CoxPHFitter(penalizer=0.01).fit(train, "futime", "death")
    assert concordance_index(test["futime"], -runaway.predict_partial_hazard(test), test["death"]) < 0.3
    assert _cox(train, covariates, "futime", "death").params[0] > 0  # the hazard rises with age
    assert c_index(train, test, covariates, "futime", "death") > 0.75
