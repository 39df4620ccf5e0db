"""Competing risks: an event with codes 0 (censored), 1 and 2 (two causes) keeps each level's meaning through
synthesis. The schema makes it a categorical event, the survival head draws a cause and a time for it, each
cause's hazard ratio and cumulative incidence survive, and the evaluation compares cumulative incidence per cause
(`cif_max_gap`)."""
import numpy as np
import pytest

from hpcsynth.comm import SoloComm
from hpcsynth.evaluate.suite import EvalSpec, evaluate
from hpcsynth.evaluate.survival import cause_counts, cumulative_incidence
from hpcsynth.models import TVAE
from survival_support import CAUSE_HAZARD_RATIOS, cause_hazard_ratio, simulate, simulate_competing

CAUSES = [1.0, 2.0]


@pytest.fixture(scope="module")
def cohort():
    """Seed 5: its own rows estimate cause-specific hazard ratios of 1.87 and 0.52."""
    return simulate_competing(seed=5)


@pytest.fixture(scope="module")
def model(cohort):
    return TVAE(epochs=100, batch_size=500, hidden=[64, 64], latent_dim=16, seed=0, categorical=["group"],
                time="time", event="event", compile="off").fit(cohort)


def incidence_gaps(synthetic, real) -> np.ndarray:
    t_max = float(real["time"].max())
    curves = [cumulative_incidence(cause_counts(f, "time", "event", CAUSES, t_max)) for f in (real, synthetic)]
    return np.abs(curves[0] - curves[1]).max(1)


def test_an_event_with_two_causes_is_a_categorical_event_with_its_three_levels(model):
    spec = {s.name: s for s in model.transformer_.schema_}["event"]
    assert (spec.kind, spec.role) == ("categorical", "event")
    assert model.transformer_.transform_of("event").labels_ == [0.0, 1.0, 2.0]
    assert model.time_head_ is not None and len(model.survival_layout_.event) == 3


def test_each_cause_keeps_its_hazard_ratio_and_cumulative_incidence(model, cohort):
    synthetic = model.sample(6000)
    assert set(synthetic["event"].unique()) == {0, 1, 2}
    real_rates, synthetic_rates = (f["event"].value_counts(normalize=True).sort_index() for f in (cohort, synthetic))
    assert np.abs(real_rates - synthetic_rates).max() < 0.03, (real_rates, synthetic_rates)
    for cause, expected in zip((1, 2), CAUSE_HAZARD_RATIOS):
        ratio, low, high = cause_hazard_ratio(synthetic.iloc[:1500], cause)
        assert low <= expected <= high, (cause, ratio, low, high)
    assert incidence_gaps(synthetic, cohort).max() < 0.05


def test_a_generator_that_swaps_the_causes_keeps_kaplan_meier_but_fails_cumulative_incidence(model, cohort):
    # any-event survival cannot see the swap; the per-cause incidence does
    synthetic = model.sample(3000)
    swapped = synthetic.assign(event=synthetic["event"].map({0: 0, 1: 2, 2: 1}))
    train, holdout = cohort.iloc[:1000], cohort.iloc[1000:]
    spec = EvalSpec.default(model.transformer_)
    assert spec.causes == CAUSES
    metrics = ["km_max_gap", "cif_max_gap"]
    kept, broken = (evaluate(f, train, holdout, model.transformer_, SoloComm(), spec, metrics=metrics)
                    for f in (synthetic, swapped))
    assert kept.scores["km_max_gap"] == pytest.approx(broken.scores["km_max_gap"])
    assert kept.scores["cif_max_gap"] < 0.08 < 0.15 < broken.scores["cif_max_gap"]
    assert set(kept.notes["cif_gap_by_cause"].replace(",", ":").split(":")[::2]) == {"1", " 2"}


def test_a_binary_event_has_no_cumulative_incidence_score():
    frame = simulate(300, seed=0)
    model = TVAE(epochs=1, batch_size=300, hidden=[16], latent_dim=4, compile="off", time="time",
                 event="event").fit(frame)
    spec = EvalSpec.default(model.transformer_)
    assert spec.causes == [] and {s.name: s.kind for s in model.transformer_.schema_}["event"] == "binary"
    found = evaluate(model.sample(300), frame, frame, model.transformer_, SoloComm(), spec, metrics=["cif_max_gap"])
    assert "cif_max_gap" not in found.scores or np.isnan(found.scores["cif_max_gap"])
