"""Bayesian network: exact federated counts, structure recovery, DP noise scale, conditional sampling, samples."""
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from hpcsynth.data.mds import MDS_METADATA, simulate_mds
from hpcsynth.models import BayesianNetwork
from hpcsynth.models.bayesnet import bic_score, chow_liu, family_counts, mutual_information, privatise
from hpcsynth.models.conditions import balanced_sample

PROGRAM = Path(__file__).with_name("programs") / "bayesnet_federated.py"


def chain(n: int, seed: int = 0) -> pd.DataFrame:
    """a -> b -> c -> x: each categorical copies its parent 85% of the time; x is Gaussian around 3 * c."""
    rng = np.random.default_rng(seed)
    a = rng.choice(3, n, p=[0.5, 0.3, 0.2])
    b = np.where(rng.uniform(size=n) < 0.85, a, rng.integers(0, 3, n))
    c = np.where(rng.uniform(size=n) < 0.85, b, rng.integers(0, 3, n))
    x = rng.normal(3.0 * c, 1.0)
    names = np.array(["lo", "mid", "hi"])
    return pd.DataFrame({"a": names[a], "b": names[b], "c": names[c], "x": x})


def skeleton(parents: list[list[int]]) -> set[frozenset]:
    return {frozenset((i, p)) for i, pa in enumerate(parents) for p in pa}


@pytest.fixture(scope="module")
def cohort():
    return simulate_mds(n_patients=1500, seed=5).drop(columns=["patient_id", "site"])


@pytest.fixture(scope="module")
def fitted(cohort):
    return BayesianNetwork(seed=2, categorical=MDS_METADATA["categorical"], time="os_months",
                           event="os_event").fit(cohort)


# -- the pieces against closed forms --------------------------------------------------------------------------
def test_family_counts_index_parents_row_major_and_child_last():
    codes = np.array([[0, 1, 2], [1, 0, 1], [1, 0, 1], [0, 1, 0]])
    table = family_counts(codes, [2, 2, 3], child=2, parents=[0, 1])
    assert table.shape == (4, 3) and table.sum() == 4
    assert table[0 * 2 + 1, 2] == 1 and table[1 * 2 + 0, 1] == 2 and table[0 * 2 + 1, 0] == 1


def test_mutual_information_and_bic_match_closed_forms():
    independent = np.outer([30, 70], [40, 60]) / 100.0
    assert mutual_information(independent) == pytest.approx(0.0, abs=1e-12)
    copy = np.diag([50.0, 50.0])                       # Y = X, uniform binary: I = log 2
    assert mutual_information(copy) == pytest.approx(np.log(2))
    # one configuration, counts 50/50: log-likelihood 100 log(1/2), one free parameter
    assert bic_score(np.array([[50.0, 50.0]]), 100) == pytest.approx(100 * np.log(0.5) - 0.5 * np.log(100))


def test_chow_liu_is_the_maximum_spanning_tree_rooted_at_the_first_column():
    mi = np.array([[0, 5, 1, 0], [5, 0, 4, 2], [1, 4, 0, 3], [0, 2, 3, 0]], dtype=float)
    assert chow_liu(mi) == [[], [0], [1], [2]]


# -- structure ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("structure", ["chow_liu", "bic"])
def test_a_chain_dependency_is_recovered(structure):
    model = BayesianNetwork(structure=structure, n_bins=8).fit(chain(4000))
    assert skeleton(model.parents_) == {frozenset((0, 1)), frozenset((1, 2)), frozenset((2, 3))}


def test_bic_finds_a_two_parent_family_and_respects_the_parent_bound():
    """s = a + b (noisy): BIC puts a and b both in s's family (a tie in score orients the first edge into the
    lower column, hence s first: add-only greedy search cannot reverse an edge)."""
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 3, 5000), rng.integers(0, 3, 5000)
    s = np.where(rng.uniform(size=5000) < 0.9, a + b, rng.integers(0, 5, 5000))
    frame = pd.DataFrame({"s": s.astype(str), "a": a.astype(str), "b": b.astype(str)})
    assert BayesianNetwork(structure="bic", max_parents=2).fit(frame).parents_ == [[1, 2], [], []]
    bounded = BayesianNetwork(structure="bic", max_parents=1).fit(frame)
    assert max(len(p) for p in bounded.parents_) == 1


# -- federated equals centralized -----------------------------------------------------------------------------
@pytest.mark.mpi
@pytest.mark.parametrize("structure", ["chow_liu", "bic"])
def test_counts_summed_across_sites_equal_pooled_training_bit_for_bit(mpirun, structure):
    result = mpirun(3, [sys.executable, str(PROGRAM), structure, "shared"], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "EQUAL" in result.stdout


@pytest.mark.mpi
def test_isolated_sites_do_not_equal_pooled_training(mpirun):
    result = mpirun(3, [sys.executable, str(PROGRAM), "chow_liu", "isolated"], timeout=120)
    assert result.returncode != 0 and "differ" in result.stdout + result.stderr


# -- differential privacy -------------------------------------------------------------------------------------
@pytest.mark.parametrize("noise", ["laplace", "gaussian"])
def test_noise_variance_matches_the_mechanisms_closed_form(noise):
    rng = np.random.default_rng(0)
    noisy, scale = privatise(np.zeros(200_000), n_tables=6, epsilon=0.5, noise=noise, delta=1e-5, rng=rng)
    if noise == "laplace":
        assert scale == pytest.approx(6 / 0.5)                             # b = L1 sensitivity / epsilon
        expected = 2 * scale**2
    else:
        assert scale == pytest.approx(np.sqrt(2 * np.log(1.25 / 1e-5)) * np.sqrt(6) / 0.5)
        expected = scale**2
    assert noisy.var() == pytest.approx(expected, rel=0.03)


def test_private_fit_noises_every_count_with_the_calibrated_scale_and_reports_epsilon():
    frame = chain(3000, seed=3)
    frame["y"] = frame["x"] + np.random.default_rng(0).normal(size=3000)
    frame["z"] = frame["y"] + np.random.default_rng(1).normal(size=3000)
    model = BayesianNetwork(n_bins=20, epsilon=2.0, structure_share=0.25, seed=7).fit(frame)
    assert model.epsilon_spent_ == pytest.approx(2.0) and model.delta_spent_ == 0.0
    codes = model.discretiser_.codes(model.transformer_.encode(frame))
    cards = model.discretiser_.cards
    error = np.concatenate([(noisy - family_counts(codes, cards, i, pa)).ravel()
                            for i, (noisy, pa) in enumerate(zip(model.counts_, model.parents_))])
    b = len(cards) / (2.0 * 0.75)                        # 6 tables, 75% of epsilon on the CPT release
    assert error.size > 500 and error.var() == pytest.approx(2 * b**2, rel=0.25)
    exact = BayesianNetwork(n_bins=20, seed=7).fit(frame)
    assert exact.epsilon_spent_ == 0.0 and len(model.sample(50)) == 50


def test_private_structure_search_by_bic_is_refused():
    with pytest.raises(ValueError, match="Chow-Liu"):
        BayesianNetwork(structure="bic", epsilon=1.0).fit(chain(100))


# -- sampling -------------------------------------------------------------------------------------------------
def test_constructor_only_stores_parameters():
    model = BayesianNetwork(n_bins=7, structure="bic")
    assert model.n_bins == 7 and not [k for k in vars(model) if k.endswith("_")]


def test_samples_have_the_columns_kinds_and_labels_of_the_data(fitted, cohort):
    sample = fitted.sample(2000)
    assert list(sample.columns) == list(cohort.columns) and len(sample) == 2000
    assert set(sample["sex"].dropna()) <= set(cohort["sex"].dropna())
    assert set(sample["cyto_risk"].dropna()) <= set(cohort["cyto_risk"].dropna())
    assert set(sample["SF3B1"].dropna()) <= {0.0, 1.0} and set(sample["os_event"].dropna()) <= {0.0, 1.0}
    for column in ("age", "hb", "plt", "os_months"):
        assert cohort[column].min() <= sample[column].min() and sample[column].max() <= cohort[column].max()
    assert np.all(sample["plt"].dropna() == np.round(sample["plt"].dropna()))
    assert abs(sample["KRAS"].isna().mean() - cohort["KRAS"].isna().mean()) < 0.05
    assert abs(sample["age"].median() - cohort["age"].median()) < 3


def test_numbers_are_decoded_inside_the_quantile_bin_they_were_drawn_in(fitted):
    rng = np.random.default_rng(0)
    codes, _ = fitted._forward(3000, {}, rng)
    table = fitted.discretiser_.decode(codes, rng)
    again = fitted.discretiser_.codes(fitted.transformer_.encode(table))
    continuous = [i for i, spec in enumerate(fitted.transformer_.schema_) if spec.kind == "continuous"]
    assert np.mean(again[:, continuous] == codes[:, continuous]) > 0.995


def test_same_seed_same_samples_and_different_seed_differs(cohort, fitted):
    again = BayesianNetwork(seed=2, categorical=MDS_METADATA["categorical"], time="os_months",
                            event="os_event").fit(cohort)
    pd.testing.assert_frame_equal(fitted.sample(300), again.sample(300))
    assert not fitted.sample(300).equals(fitted.sample(300, seed=99))


def test_conditional_samples_hold_the_condition_and_follow_the_conditional_distribution():
    frame = chain(6000, seed=4)
    model = BayesianNetwork(n_bins=8, seed=1).fit(frame)
    sample = model.sample(3000, conditions={"c": "hi"})
    assert (sample["c"] == "hi").all()
    truth = frame[frame["c"] == "hi"]
    for column in ("a", "b"):  # ancestors of the evidence: reweighted by likelihood weighting
        want = truth[column].value_counts(normalize=True)
        got = sample[column].value_counts(normalize=True).reindex(want.index, fill_value=0.0)
        assert np.abs(got - want).max() < 0.05, column
    assert abs(sample["x"].mean() - truth["x"].mean()) < 0.2   # a descendant: drawn given the evidence


def test_conditions_on_unknown_levels_or_numeric_columns_are_errors(fitted):
    with pytest.raises(ValueError, match="no level"):
        fitted.sample(10, conditions={"sex": "X"})
    with pytest.raises(ValueError, match="numeric"):
        fitted.sample(10, conditions={"age": 70})


def test_balanced_sample_upsamples_the_rare_class():
    frame = chain(4000, seed=6)
    model = BayesianNetwork(seed=0).fit(frame)
    sample = balanced_sample(model, 900, "a")
    assert frame["a"].value_counts(normalize=True)["hi"] < 0.25
    assert sample["a"].value_counts().to_dict() == {"hi": 300, "lo": 300, "mid": 300}


@pytest.mark.mpi
def test_the_job_runs_every_strategy_on_three_ranks_and_fedavg_is_pooled_training(mpirun, write_job, tmp_path):
    job = write_job({"model": {"name": "bayesnet", "n_bins": 8, "structure": "bic"},
                     "federation.strategy": ["centralized", "isolated", "fedavg"]})
    result = mpirun(3, [sys.executable, "-m", "hpcsynth.cli", "run", str(job)], timeout=200)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = {}
    for strategy in ("centralized", "isolated", "fedavg"):
        with h5py.File(tmp_path / f"run-{strategy}.h5") as f:
            assert f.attrs["status"] == "complete" and f["rounds"]["steps"].tolist() == [0]
            runs[strategy] = (f["checkpoint/params"][()], f["evaluation"].attrs["quality"])
    assert np.array_equal(runs["fedavg"][0], runs["centralized"][0]) and runs["fedavg"][1] == runs["centralized"][1]
    assert runs["isolated"][0].shape[0] == 3 and runs["isolated"][1] != runs["centralized"][1]
