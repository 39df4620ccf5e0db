"""What the survival tests share: a simulated cohort with a known hazard (exponential times, hazard ratio 2 for one
binary covariate, independent censoring and an administrative end of follow-up) and the check that synthetic rows
recover its hazard ratio and Kaplan-Meier curve and break no survival constraint."""
import numpy as np
import pandas as pd
from lifelines import CoxPHFitter

from hpcsynth.comm import SoloComm
from hpcsynth.evaluate.survival import compare_km, constraint_violations

HAZARD_RATIO = 2.0
FOLLOW_UP = 12.0


def simulate(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Exponential event times with baseline hazard 0.1 and hazard ratio 2 for `treated`, an age and a group that
    do not act, exponential losses to follow-up (mean 15) and the end of follow-up at 12."""
    rng = np.random.default_rng(seed)
    treated = rng.integers(0, 2, n)
    event_time = rng.exponential(1.0 / (0.1 * HAZARD_RATIO ** treated))
    censoring = np.minimum(rng.exponential(15.0, n), FOLLOW_UP)
    return pd.DataFrame({"treated": treated, "age": rng.normal(60, 10, n), "group": rng.choice(["a", "b", "c"], n),
                         "time": np.minimum(event_time, censoring).round(3) + 0.001,
                         "event": (event_time <= censoring).astype(int)})


def hazard_ratio(frame: pd.DataFrame) -> tuple[float, float, float]:
    """The Cox hazard ratio of `treated` and its 95% interval."""
    cox = CoxPHFitter().fit(frame[["treated", "time", "event"]].astype(float), "time", "event")
    low, high = np.exp(cox.confidence_intervals_.loc["treated"])
    return float(np.exp(cox.params_["treated"])), float(low), float(high)


def km_gap(synthetic: pd.DataFrame, real: pd.DataFrame) -> float:
    return compare_km(synthetic, real, "time", "event", float(real["time"].max()), SoloComm()).gaps["all"]


def check_survival(synthetic: pd.DataFrame, real: pd.DataFrame) -> None:
    """The hazard ratio's interval on 1500 synthetic rows covers 2; the Kaplan-Meier gap of all the rows (several
    thousand, so that the synthetic curve's own sampling noise stays small) is below 0.05; no constraint breaks."""
    ratio, low, high = hazard_ratio(synthetic.iloc[:1500])
    assert low <= HAZARD_RATIO <= high, (ratio, low, high)
    gap = km_gap(synthetic, real)
    assert gap < 0.05, gap
    declared = synthetic["event"].isin([0, 1]).to_numpy()
    found = constraint_violations(synthetic["time"].to_numpy(dtype=float), declared, float(real["time"].max()))
    assert found["rows"] == 0, found


CAUSE_HAZARD_RATIOS = (2.0, 0.5)  # of `treated`, for causes 1 and 2


def simulate_competing(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Two competing causes (event codes 1 and 2, 0 censored), each with baseline hazard 0.08 and its hazard ratio
    in `CAUSE_HAZARD_RATIOS` for `treated`, with the same censoring as `simulate`."""
    rng = np.random.default_rng(seed)
    treated = rng.integers(0, 2, n)
    causes = np.stack([rng.exponential(1.0 / (0.08 * ratio ** treated)) for ratio in CAUSE_HAZARD_RATIOS])
    censoring = np.minimum(rng.exponential(15.0, n), FOLLOW_UP)
    first = causes.min(0)
    return pd.DataFrame({"treated": treated, "age": rng.normal(60, 10, n), "group": rng.choice(["a", "b", "c"], n),
                         "time": np.minimum(first, censoring).round(3) + 0.001,
                         "event": np.where(first <= censoring, causes.argmin(0) + 1, 0)})


def cause_hazard_ratio(frame: pd.DataFrame, cause: int) -> tuple[float, float, float]:
    """The cause-specific Cox hazard ratio of `treated` (the other causes censored) and its 95% interval."""
    return hazard_ratio(frame.assign(event=(frame["event"] == cause).astype(int)))


def assert_dp_sgd_covers_the_head(model, batch, noise) -> None:
    """The survival head is part of a per-row loss: DP-SGD's per-sample gradients (vmap of the one-row loss) sum
    to the batch gradient and are not zero on the head (the last parameters of the flat buffer), and a private
    local update moves the head."""
    import torch

    from hpcsynth.federated.privacy import make_dpsgd
    from model_support import per_sample_matrix

    mechanism = make_dpsgd(1.0, 1e-5, 1.0, "rdp", 0.1, 10, torch.Generator().manual_seed(0))
    model.make_private(mechanism)
    per_sample = per_sample_matrix(mechanism, batch, noise)
    model.flat_.zero_grad()
    (model.loss(batch, noise) * batch.shape[0]).backward()
    torch.testing.assert_close(per_sample.sum(0), model.shared_gradients(), rtol=1e-4, atol=1e-4)
    head = sum(p.numel() for p in model.time_head_.parameters())
    assert per_sample[:, -head:].abs().sum() > 0
    before = model.shared_parameters().clone()
    model.local_update(batch, 2)
    assert not torch.equal(before[-head:], model.shared_parameters()[-head:])


def assert_a_saved_model_keeps_the_head(model, path) -> None:
    """A fitted survival-aware model saved and loaded again has its head and samples the same rows."""
    model.save(path)
    loaded = type(model).load(path)
    assert loaded.time_head_ is not None
    pd.testing.assert_frame_equal(loaded.sample(200), model.sample(200))
