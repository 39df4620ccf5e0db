"""The follow-up of the simulated MDS cohort: each patient of `hpcsynth.data.mds` seen at irregular visits until
death, censoring or progression to AML, as `Sequences` (no real patient is behind any visit).

The first visit is the static cohort's row (the same seed gives the same baseline labs, with the same registry
gaps). From there, each rule below is either a published fact or a choice of ours, ordered as the source says:
- Visit intervals shorten as risk rises: lower-risk patients are watched every few months, higher-risk patients
  seen at every 28-day hypomethylating cycle [3, 4]. Mean intervals by IPSS-R group [1], very low to very high:
  182, 120, 91, 56 and 28 days (ours), gamma-distributed (shape 3) so visits are irregular; a visit with a
  transfusion brings the next one forward by half (transfusion visits every few weeks [6]).
- Progression to AML: an exponential time per IPSS-R group whose 25th percentile is the group's published
  median time to 25% AML evolution [1]: not reached (taken as 20 years), 10.8, 3.2, 1.4 and 0.7 years. It is
  observed when it comes before death or censoring (the static cohort's `os_months`); the visit at which it is
  diagnosed is the patient's last (the patient leaves MDS follow-up) and carries `aml` = 1, marrow blasts of at
  least 20%, the WHO threshold that defines AML [5].
- Counts drift down before progression: over the 180 days before it, haemoglobin falls by up to 2 g/dL and
  platelets and neutrophils by factors of up to 3.3 and 2.5, while blasts climb towards the AML threshold,
  quadratically in time (ours; cytopenias deepening with clonal evolution [2]). Away from progression, counts
  drift slowly down, faster in higher-risk groups, blasts slowly up (ours), and each lab follows a
  mean-reverting random walk (Ornstein-Uhlenbeck, 120-day memory) plus measurement noise, so consecutive visits
  correlate as serial labs do.
- Transfusion: red cells given at a visit with haemoglobin below 8 g/dL (90% of such visits), the restrictive
  trigger common in MDS outpatients [6]; transfusion dependence at a visit is at least 2 transfusions in the last
  16 weeks, Malcovati's definition (at least one every 8 weeks over 4 months) [2].
- Marrow blasts are measured at the first visit, at progression and at 15% of other visits (ours: repeat
  marrows when counts change [3]); blood counts miss at 2% of visits (ours).
Sources:
[1] Greenberg et al., Blood 2012;120:2454 (IPSS-R)     [2] Malcovati et al., J Clin Oncol 2007;25:3503 (WPSS)
[3] Malcovati et al., Blood 2013;122:2943 (ELN)        [4] Fenaux et al., Lancet Oncol 2009;10:223 (azacitidine)
[5] Arber et al., Blood 2016;127:2391 (WHO 2016)       [6] Wood & McQuilten, Hematology ASH Educ 2020:167
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hpcsynth.data.mds import IPSSR_CATEGORIES, MDS_GENES, simulate_mds
from hpcsynth.data.sequences import Sequences

KEY, INDEX = "patient_id", "day"
VISIT_COLUMNS: tuple[str, ...] = ("hb", "anc", "plt", "bm_blasts", "transfusion", "transfusion_dependent", "aml")
CONTEXT_COLUMNS: tuple[str, ...] = ("site", "age", "sex", "cyto_risk", "ipssr_score", "ipssr_category", *MDS_GENES,
                                    "os_months", "os_event")
CATEGORICAL: tuple[str, ...] = ("sex", "cyto_risk", "ipssr_category")

DAYS_PER_MONTH = 365.25 / 12
_MEAN_INTERVAL_DAYS = np.array([182.0, 120.0, 91.0, 56.0, 28.0])  # by IPSS-R group, ours ordered as [3, 4]
_INTERVAL_SHAPE = 3.0
_MIN_INTERVAL_DAYS = 7.0
_AML_25_YEARS = np.array([20.0, 10.8, 3.2, 1.4, 0.7])  # [1]; "not reached" taken as 20 years
_RAMP_DAYS = 180.0
_RAMP_DROP = {"hb": 2.0, "plt": np.log(3.3), "anc": np.log(2.5)}  # hb in g/dL, the others on the log scale
_DRIFT_PER_YEAR = {"hb": (-0.10, -0.10), "plt": (-0.03, -0.03), "anc": (-0.02, -0.03), "bm_blasts": (0.2, 0.5)}
_WALK_SD = {"hb": 0.6, "plt": 0.25, "anc": 0.30, "bm_blasts": 1.0}
_NOISE_SD = {"hb": 0.3, "plt": 0.10, "anc": 0.15, "bm_blasts": 0.5}
_MEMORY_DAYS = 120.0
_TRANSFUSION_TRIGGER = 8.0  # g/dL [6]
_TD_WINDOW_DAYS = 112.0  # 16 weeks [2]
_MARROW_SHARE = 0.15
_LAB_MISSING = 0.02
_MDS_BLAST_CAP = 19.9  # below the AML threshold [5]


def _intercept_fill(frame: pd.DataFrame, column: str, category: np.ndarray) -> np.ndarray:
    """The baseline value behind a lab the registry lacks: the median of the patient's IPSS-R group (the first
    visit keeps the gap; later visits need a level to drift from)."""
    values = frame[column].to_numpy(dtype=float)
    medians = pd.Series(values).groupby(category).transform("median").to_numpy()
    return np.where(np.isnan(values), np.where(np.isnan(medians), np.nanmedian(values), medians), values)


def _schedule(rng: np.random.Generator, group: int, transfused: list[bool]) -> float:
    """The next interval in days: gamma around the group's mean, halved after a transfusion."""
    mean = _MEAN_INTERVAL_DAYS[group] * (0.5 if transfused and transfused[-1] else 1.0)
    return max(_MIN_INTERVAL_DAYS, float(np.ceil(rng.gamma(_INTERVAL_SHAPE, mean / _INTERVAL_SHAPE))))


def _patient(rng: np.random.Generator, group: int, base: dict[str, float], first: dict[str, float],
             end_day: float, aml_day: float | None) -> dict[str, list]:
    """One patient's visits: day 0 shows the static row (`first`, gaps included), later days the model above."""
    logs = {"hb": base["hb"], "plt": np.log(base["plt"]), "anc": np.log(base["anc"]), "bm_blasts": base["bm_blasts"]}
    walk = dict.fromkeys(logs, 0.0)
    target_blasts = float(rng.uniform(20.5, 35.0))
    out: dict[str, list] = {c: [] for c in (INDEX, *VISIT_COLUMNS)}
    day, last_day = 0.0, (aml_day if aml_day is not None else end_day)
    while True:
        progressing = aml_day is not None and day >= aml_day
        values = {}
        ramp = 0.0 if aml_day is None else float(np.clip(1.0 - (aml_day - day) / _RAMP_DAYS, 0.0, 1.0))
        for lab, level in logs.items():
            slope = _DRIFT_PER_YEAR[lab][0] + _DRIFT_PER_YEAR[lab][1] * group
            value = level + slope * day / 365.25 + walk[lab] + _NOISE_SD[lab] * rng.standard_normal()
            if lab == "bm_blasts":
                value = max(value, 0.0) + ramp**2 * max(target_blasts - value, 0.0)
                value = max(value, 20.0) if progressing else min(max(value, 0.0), _MDS_BLAST_CAP)
            else:
                value -= _RAMP_DROP[lab] * ramp
            values[lab] = value
        hb = float(np.clip(values["hb"], 4.0, 16.5))
        measured = {"hb": round(hb, 1), "plt": round(float(np.clip(np.exp(values["plt"]), 2.0, 1500.0))),
                    "anc": round(float(np.clip(np.exp(values["anc"]), 0.02, 12.0)), 2),
                    "bm_blasts": round(values["bm_blasts"], 1)}
        if day == 0.0:
            measured = {lab: first[lab] for lab in measured}
        else:
            for lab in ("hb", "plt", "anc"):
                if rng.random() < _LAB_MISSING:
                    measured[lab] = np.nan
            if not progressing and rng.random() >= _MARROW_SHARE:
                measured["bm_blasts"] = np.nan
        transfused = bool(measured["hb"] < _TRANSFUSION_TRIGGER and rng.random() < 0.9)
        out[INDEX].append(day)
        for lab in ("hb", "anc", "plt", "bm_blasts"):
            out[lab].append(measured[lab])
        out["transfusion"].append(int(transfused))
        recent = [t for d, t in zip(out[INDEX], out["transfusion"]) if d > day - _TD_WINDOW_DAYS]
        out["transfusion_dependent"].append(int(sum(recent) >= 2))
        out["aml"].append(int(progressing))
        if progressing:
            break
        step = _schedule(rng, group, [bool(t) for t in out["transfusion"]])
        if day + step > last_day:
            if aml_day is None:
                break
            step = max(1.0, float(np.ceil(aml_day - day)))  # the visit that diagnoses AML
        keep = np.exp(-step / _MEMORY_DAYS)
        for lab in walk:
            walk[lab] = keep * walk[lab] + _WALK_SD[lab] * np.sqrt(1.0 - keep**2) * rng.standard_normal()
        day += step
        if aml_day is not None and day >= aml_day:
            aml_day = day
    return out


def simulate_mds_followup(n_patients: int = 4427, n_sites: int = 3, seed: int = 0) -> Sequences:
    """Simulate the follow-up of `simulate_mds(n_patients, n_sites, seed)` (see the module docstring).

    Parameters
    ----------
    n_patients : int
        Patients in the cohort, over all sites.
    n_sites : int
        Sites, from the referral centre to the community hospital (the static simulator's profiles).
    seed : int
        The same arguments always give the same sequences.

    Returns
    -------
    Sequences
        Context: `CONTEXT_COLUMNS` with the key (the site column `site` among them); visits: the key, `day`
        (days since the first visit) and `VISIT_COLUMNS`.
    """
    static = simulate_mds(n_patients=n_patients, n_sites=n_sites, seed=seed)
    rng = np.random.default_rng([seed, 16])
    category = pd.Series(static["ipssr_category"]).map({c: i for i, c in enumerate(IPSSR_CATEGORIES)})
    category = category.fillna(2).astype(int).to_numpy()  # a missing group (missing labs) follows intermediate
    base = {lab: _intercept_fill(static, lab, category) for lab in ("hb", "plt", "anc", "bm_blasts")}
    end_days = static["os_months"].to_numpy(dtype=float) * DAYS_PER_MONTH
    rate = -np.log(0.75) / (_AML_25_YEARS[category] * 365.25)
    aml_days = rng.standard_exponential(len(static)) / rate
    rows: dict[str, list] = {c: [] for c in (KEY, INDEX, *VISIT_COLUMNS)}
    for i, key in enumerate(static[KEY]):
        progresses = aml_days[i] < end_days[i]
        visits = _patient(rng, int(category[i]), {lab: base[lab][i] for lab in base},
                          {lab: static[lab].iat[i] for lab in base}, end_days[i],
                          float(aml_days[i]) if progresses else None)
        rows[KEY].extend([key] * len(visits[INDEX]))
        for column, values in visits.items():
            rows[column].extend(values)
    visits = pd.DataFrame(rows).astype({"transfusion": np.int64, "transfusion_dependent": np.int64,
                                        "aml": np.int64, INDEX: float})
    context = static[[KEY, *CONTEXT_COLUMNS]].reset_index(drop=True)
    return Sequences(context.sort_values(KEY, kind="stable").reset_index(drop=True),
                     visits.sort_values([KEY, INDEX], kind="stable").reset_index(drop=True), KEY, INDEX)
