"""Subgroups: the masks follow the stated bands, a subgroup's fidelity is the shape score within it, the worst
subgroup is named."""
import numpy as np
import pandas as pd
import pytest

from hpcsynth.comm import SoloComm
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.fairness import fairness, subgroups
from hpcsynth.evaluate.fidelity import column_scores


def test_age_bands_and_sex_levels():
    frame = pd.DataFrame({"age": [59.9, 60.0, 79.9, 80.0, np.nan], "sex": ["F", "M", "F", "M", None]})
    masks = subgroups(frame, "sex", "age", ["F", "M"])
    assert masks["age<60"].tolist() == [True, False, False, False, False]
    assert masks["age 70-79"].tolist() == [False, False, True, False, False]
    assert masks["age>=80"].tolist() == [False, False, False, True, False]
    assert masks["sex=F"].sum() == 2


def test_the_misrepresented_subgroup_is_named_worst():
    rng = np.random.default_rng(0)
    real = pd.DataFrame({"age": rng.uniform(40, 90, 800), "sex": rng.choice(["F", "M"], 800),
                         "x": rng.normal(size=800)})
    synthetic = real.copy()
    synthetic.loc[synthetic["sex"] == "F", "x"] += 2.0  # women's values are wrong
    transformer = TableTransformer(categorical=["sex"]).fit(real)
    table = fairness(synthetic, real, transformer, SoloComm(), "sex", "age", np.zeros(800, int), 1, None)
    scores, notes = table.scores()
    assert notes["fairness_fidelity_worst"] == "sex=F"
    women = real["sex"] == "F"
    expected = np.mean(list(column_scores(synthetic[women], real[women], transformer, SoloComm()).values()))
    assert scores["fairness_fidelity_min"] == pytest.approx(expected)
