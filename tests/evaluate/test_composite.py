"""CSF and GSF are the means of their parts (closed form), ignoring parts that cannot be computed."""
import math

import pytest

from hpcsynth.evaluate.composite import csf, gsf


def test_csf_and_gsf_are_means_of_available_parts():
    assert csf(0.9, 0.8, 0.1, 0.2, 1.0) == pytest.approx((0.9 + 0.8 + 0.9 + 0.8 + 1.0) / 5)
    assert csf(0.9, 0.8, float("nan"), float("nan"), float("nan")) == pytest.approx(0.85)
    assert gsf(0.9, 0.7, 0.5) == pytest.approx(0.7)
    assert math.isnan(gsf(float("nan"), float("nan"), float("nan")))
