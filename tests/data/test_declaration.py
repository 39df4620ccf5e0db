"""The job file's data section: `data.time_unit`, the unit of the survival time, reaches the declarations the
evaluation reads (its time-dependent AUROC horizons), and a bad value is one line naming the key."""
import pytest

from hpcsynth.config import ConfigError, from_dict
from hpcsynth.data.declaration import DataConfig
from hpcsynth.data.sources import declarations
from hpcsynth.evaluate.survival import horizons


def test_time_unit_reaches_the_declarations_and_the_horizons():
    declared = declarations(DataConfig(path="x.csv", time="futime", event="death", time_unit="months"))
    assert declared.time_unit == "months"
    assert list(horizons(declared.time_unit, [1.0])) == [12.0, 36.0, 60.0]


def test_a_named_cohort_keeps_its_unit_unless_the_job_names_one():
    assert declarations(DataConfig(builtin="flchain")).time_unit == "days"
    assert declarations(DataConfig(builtin="flchain", time_unit="years")).time_unit == "years"
    assert declarations(DataConfig(path="x.csv", time="t", event="e")).time_unit is None


@pytest.mark.parametrize("data, message", [
    ({"path": "x.csv", "time": "t", "event": "e", "time_unit": "weeks"},
     "data.time_unit: expected one of days, months, years, got 'weeks'"),
    ({"path": "x.csv", "time_unit": "days"}, "data.time_unit: names the unit of data.time, which is not given"),
])
def test_a_bad_time_unit_is_one_line_naming_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict({"data": data})
