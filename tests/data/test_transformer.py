"""`TableTransformer`'s choice of transform per column: under `numeric: mode_specific` every integer and continuous
column is mode-specific except the time of a declared time and event, which is always quantile-encoded (a survival
head's time bins are its quantiles); the saved state rebuilds the same transforms."""
import json

import numpy as np
import pandas as pd

from hpcsynth.data.mode_specific import ModeSpecificTransform
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import NumericTransform

RNG = np.random.default_rng(0)
FRAME = pd.DataFrame({"age": RNG.normal(60, 10, 200), "time": RNG.exponential(5.0, 200) + 0.01,
                      "event": RNG.integers(0, 2, 200)})


def kinds(transformer: TableTransformer) -> dict[str, type]:
    return {name: type(transformer.transform_of(name)) for name in ("age", "time")}


def test_a_declared_survival_time_is_quantile_encoded_under_mode_specific():
    transformer = TableTransformer(time="time", event="event", numeric="mode_specific").fit(FRAME)
    assert kinds(transformer) == {"age": ModeSpecificTransform, "time": NumericTransform}


def test_a_time_without_an_event_follows_numeric():
    transformer = TableTransformer(time="time", numeric="mode_specific").fit(FRAME)
    assert kinds(transformer) == {"age": ModeSpecificTransform, "time": ModeSpecificTransform}


def test_the_state_rebuilds_the_same_transforms_and_encoding():
    transformer = TableTransformer(time="time", event="event", numeric="mode_specific").fit(FRAME)
    loaded = TableTransformer.from_state(transformer.state())
    assert kinds(loaded) == kinds(transformer)
    np.testing.assert_array_equal(loaded.encode(FRAME), transformer.encode(FRAME))


def test_a_state_saved_with_a_mode_specific_survival_time_loads_as_saved():
    # a schema written before survival times were always quantile-encoded: the time's state is mode-specific
    old = json.loads(TableTransformer(time="time", numeric="mode_specific").fit(FRAME).state())
    old["event"] = "event"
    loaded = TableTransformer.from_state(json.dumps(old))
    assert kinds(loaded) == {"age": ModeSpecificTransform, "time": ModeSpecificTransform}
