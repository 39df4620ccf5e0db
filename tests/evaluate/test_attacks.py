"""Privacy attacks on hand-made tables whose answers are known."""
import numpy as np
import pandas as pd

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.attacks import anonymity, attribute_inference, distance_scores, membership_auroc, site_distances
from hpcsynth.evaluate.privacy import privacy_features


def _frame(n, seed):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"age": rng.uniform(20, 90, n), "x": rng.normal(size=n),
                         "sex": rng.choice(["F", "M"], n), "s": rng.choice(["yes", "no"], n)})


def test_copied_training_rows_are_exact_matches_and_members_are_recognised():
    train, holdout = _frame(300, 0), _frame(300, 1)
    transformer = TableTransformer(categorical=["sex", "s"]).fit(train)
    copies = train.copy()
    scores = distance_scores([site_distances(copies, train, holdout, transformer)])
    assert scores["exact_match_rate"] == 1.0 and scores["dcr_synthetic_p5"] == 0.0 and scores["nndr_median"] == 0.0
    assert scores["dcr_closer_than_holdout_median"] == 1.0
    assert membership_auroc(copies, train, holdout, transformer) == 1.0
    fresh = _frame(300, 2)
    assert abs(membership_auroc(fresh, train, holdout, transformer) - 0.5) < 0.1
    assert attribute_inference(copies, train, holdout, transformer, "s")["accuracy"] == 1.0


def test_nndr_is_nearest_over_second_nearest_distance_by_brute_force():
    train, synthetic = _frame(50, 3), _frame(20, 4)
    transformer = TableTransformer(categorical=["sex", "s"]).fit(train)
    d = site_distances(synthetic, train, train.iloc[:0], transformer)
    a, b = privacy_features(synthetic, transformer), privacy_features(train, transformer)
    full = np.sort(np.linalg.norm(a[:, None, :].astype(float) - b[None, :, :], axis=2), axis=1)
    assert np.allclose(d.synthetic, full[:, 0], atol=1e-5) and np.allclose(d.second, full[:, 1], atol=1e-5)


def test_k_anonymity_l_diversity_and_homogeneity_on_a_tiny_table():
    train = pd.DataFrame({"sex": ["F", "F", "M", "M"], "s": ["a", "b", "a", "a"]})
    transformer = TableTransformer(categorical=["sex", "s"]).fit(train)
    synthetic = pd.DataFrame({"sex": ["F", "F", "F", "M", "M"], "s": ["a", "b", "a", "a", "a"]})
    got = anonymity(synthetic, train, transformer, ["sex"], "s")
    # classes: F (3 rows, values a/b), M (2 rows, only a): the two M patients are exposed by homogeneity
    assert got == {"k_anonymity": 2.0, "l_diversity": 1.0, "homogeneity_risk": 0.5}


def test_all_attribute_mode_is_the_worst_over_every_combination_when_none_is_left_out():
    from itertools import combinations

    from hpcsynth.evaluate.attacks import worst_anonymity

    train, synthetic = _frame(120, 10), _frame(150, 11)
    transformer = TableTransformer(categorical=["sex", "s"]).fit(train)
    got = worst_anonymity(synthetic, train, transformer, "s", max_quasi=2, limit=100)
    every = [anonymity(synthetic, train, transformer, list(c), "s")
             for r in (1, 2) for c in combinations(["age", "x", "sex"], r)]
    assert got == {"k_anonymity": min(e["k_anonymity"] for e in every),
                   "l_diversity": min(e["l_diversity"] for e in every),
                   "homogeneity_risk": max(e["homogeneity_risk"] for e in every)}
    declared = anonymity(synthetic, train, transformer, ["sex"], "s")
    assert got["k_anonymity"] < declared["k_anonymity"] and got["homogeneity_risk"] > declared["homogeneity_risk"]


def test_the_combinations_tried_are_the_most_identifying_within_the_caps():
    from hpcsynth.evaluate.attacks import identifying_combinations

    train = _frame(200, 12)
    transformer = TableTransformer(categorical=["sex", "s"]).fit(train)
    tried = identifying_combinations(train, transformer, ["age", "x", "sex", "s"], max_quasi=2, limit=3)
    assert len(tried) == 3 and all(len(c) <= 2 for c in tried)
    assert tried[0] == ("age", "x")  # two numbers in 10 bins each split the rows most
    assert ("sex",) not in tried and ("s",) not in tried  # two levels alone identify least


def test_quasi_all_turns_on_the_all_attribute_mode_and_the_suite_reports_its_worst_k(mds, noisy_synthetic):
    from dataclasses import replace

    from hpcsynth.comm import SoloComm
    from hpcsynth.evaluate.suite import EvalSpec, evaluate

    declared = EvalSpec(sensitive=["os_event"], quasi=["age", "sex"])
    everything = replace(declared, quasi=["all"])  # as `hpcsynth evaluate --quasi all` sets it
    assert everything.all_quasi and everything.quasi == [] and "quasi" in everything.roles(1)
    assert not replace(everything, quasi=["age"]).all_quasi and replace(everything, seed=3).all_quasi
    train, holdout, _, t = mds
    names = ["k_anonymity", "homogeneity_risk"]
    worst = evaluate(noisy_synthetic, train, holdout, t, SoloComm(), everything, metrics=names).scores
    some = evaluate(noisy_synthetic, train, holdout, t, SoloComm(), declared, metrics=names).scores
    assert worst["k_anonymity"] <= some["k_anonymity"] and worst["homogeneity_risk"] >= some["homogeneity_risk"]
    assert worst["k_anonymity"] == 1.0  # three binned attributes single out some synthetic row
