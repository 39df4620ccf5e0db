"""Private transform statistics: each release is a Gaussian mechanism of the calibrated scale, ranges and levels
are released only where the noise allows, the accountant charges them ahead of DP-SGD, and a private job's
epsilon equals Opacus's accountant for the whole history."""
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from hpcsynth.comm import SoloComm
from hpcsynth.config import ConfigError, from_dict
from hpcsynth.data.accounting import RDP_ORDERS, calibrate
from hpcsynth.data.private_stats import (
    PUBLIC_EDGES,
    StatisticsBudget,
    StatisticsNoise,
    count_releases,
    private_levels,
    private_range,
)
from hpcsynth.data.schema import ColumnSpec, DataError
from hpcsynth.data.transformer import TableTransformer

PROGRAM = Path(__file__).parents[1] / "federated" / "programs" / "private_transform_fit.py"


def noise(z=2.0, levels_delta=1e-6, selected=1, seed=0):
    return StatisticsNoise(z, levels_delta, selected, seed, rank=0)


def test_a_release_adds_gaussian_noise_of_the_multiplier_and_is_counted():
    n = noise(z=3.0)
    released = n.release(np.full(200_000, 10.0), SoloComm())
    assert n.releases == 1
    assert released.mean() == pytest.approx(10.0, abs=0.05) and released.std() == pytest.approx(3.0, rel=0.01)


def test_the_public_grid_is_symmetric_and_fixed_before_the_data():
    assert np.all(np.diff(PUBLIC_EDGES) > 0) and np.allclose(PUBLIC_EDGES, -PUBLIC_EDGES[::-1])
    assert PUBLIC_EDGES[0] <= -1e9 and PUBLIC_EDGES[-1] >= 1e9


def test_the_private_range_covers_the_bulk_within_a_bucket():
    x = np.random.default_rng(1).normal(60.0, 8.0, 20_000)
    low, high = private_range(x, noise(z=5.0), SoloComm(), "age")
    assert low <= np.quantile(x, 0.01) and high >= np.quantile(x, 0.99)
    assert low >= np.min(x) / 2 and high <= 2 * np.max(x)


def test_a_range_the_noise_hides_asks_for_public_bounds():
    with pytest.raises(DataError, match="column 'age'.*declare it in data.bounds"):
        private_range(np.array([61.0, 62.0, 70.0]), noise(z=50.0), SoloComm(), "age")


def test_a_level_held_by_one_row_is_released_at_the_stated_rate():
    """With levels_delta 0.1 over one column, a count of 1 passes the threshold with probability 0.1."""
    passed = sum(bool(private_levels({"rare": 1}, noise(z=2.0, levels_delta=0.1, seed=s), SoloComm()))
                 for s in range(4000))
    assert passed / 4000 == pytest.approx(0.1, abs=0.015)


def test_frequent_levels_are_released_and_unique_ones_are_not():
    n = noise(z=2.0)
    released = private_levels({"common": 500, "other": 200, "unique": 1}, n, SoloComm())
    assert released == {"common", "other"} and n.releases == 1
    assert n.level_threshold == pytest.approx(1 + 2.0 * 4.753, rel=1e-3)  # Phi^-1(1 - 1e-6)


def test_releases_counted_per_column_kind_and_declaration():
    schema = [ColumnSpec("age", "continuous"), ColumnSpec("hb", "continuous"), ColumnSpec("sex", "categorical"),
              ColumnSpec("risk", "categorical"), ColumnSpec("TP53", "binary")]
    assert count_releases(schema, {}, {}, "quantile") == (2 + 2 + 2 + 2 + 1, 2)
    assert count_releases(schema, {"age": (0, 120)}, {"sex": ["F", "M"]}, "quantile") == (1 + 2 + 1 + 2 + 1, 1)
    with pytest.raises(DataError, match="mode_specific has no private fit"):
        count_releases(schema, {}, {}, "mode_specific")


def test_the_statistics_alone_spend_their_share_by_opacus_accountant():
    from opacus.accountants import RDPAccountant

    frame = pd.DataFrame({"age": np.random.default_rng(0).normal(60, 9, 5000),
                          "sex": np.random.default_rng(1).choice(["F", "M"], 5000)})
    t = TableTransformer().fit(frame, SoloComm(), StatisticsBudget(0.5, 1e-5, 1e-6, "rdp", seed=0))
    assert t.privacy_["releases"] == 4
    accountant = RDPAccountant()
    accountant.history = [(t.privacy_["noise_multiplier"], 1.0, 4)]
    assert accountant.get_epsilon(1e-5, alphas=RDP_ORDERS) == pytest.approx(0.5, abs=0.005)
    assert t.transform_of("sex").labels_ == ["F", "M"] and t.transform_of("sex").width == 3  # and a missing code


def test_dp_sgd_calibrated_after_the_statistics_spends_the_rest():
    from opacus.accountants import RDPAccountant

    spent = [(20.0, 1.0, 40)]
    sigma = calibrate(3.0, 1e-5, 0.05, 300, "rdp", spent)
    accountant = RDPAccountant()
    accountant.history = [*spent, (sigma, 0.05, 300)]
    total = accountant.get_epsilon(1e-5, alphas=RDP_ORDERS)
    assert 2.97 <= total <= 3.0
    assert sigma > calibrate(3.0, 1e-5, 0.05, 300, "rdp")  # the statistics' share costs DP-SGD noise


def test_public_bounds_and_levels_replace_the_exchanged_ones():
    frame = pd.DataFrame({"age": [30.0, 40.0, 130.0], "risk": ["low", "high", "low"]})
    t = TableTransformer(bounds={"age": [18, 100]}, levels={"risk": ["low", "mid", "high"]}).fit(frame)
    age = t.transform_of("age")
    assert (age.min_, age.max_) == (18.0, 100.0) and age.n_ == 3
    assert t.transform_of("risk").labels_ == ["high", "low", "mid"]
    back = t.decode(t.encode(frame) * 50 - 25, np.random.default_rng(0))  # near-certain logits
    assert back["age"].max() <= 100.0


@pytest.mark.parametrize("declared, message", [
    ({"bounds": {"risk": [0, 1]}}, "data.bounds.risk: a categorical column"),
    ({"bounds": {"nope": [0, 1]}}, "data.bounds.nope: not a column of the data"),
    ({"levels": {"age": ["a"]}}, "data.levels.age: a continuous column"),
])
def test_declarations_on_the_wrong_column_are_named(declared, message):
    frame = pd.DataFrame({"age": [30.5, 40.0, 50.0], "risk": ["low", "high", "low"]})
    with pytest.raises(DataError, match=message):
        TableTransformer(**declared).fit(frame)


def test_a_binary_text_column_needs_declared_levels_when_private():
    frame = pd.DataFrame({"smoker": ["yes", "no"] * 200})
    t = TableTransformer(kinds={"smoker": "binary"})
    with pytest.raises(DataError, match="column 'smoker': a binary column of text labels"):
        t.fit(frame, SoloComm(), StatisticsBudget(4.0, 1e-5, 1e-6, "rdp", seed=0))


@pytest.mark.parametrize("mapping, key", [
    ({"privacy": {"statistics_share": 1.0}}, "privacy.statistics_share"),
    ({"privacy": {"statistics_share": 0.1}, "model": {"numeric": "mode_specific"}}, "model.numeric"),
    ({"data": {"builtin": "mds", "bounds": {"age": [10, 5]}}}, "data.bounds.age"),
    ({"data": {"builtin": "mds", "levels": {"sex": []}}}, "data.levels.sex"),
])
def test_config_names_the_bad_privacy_or_declaration_key(mapping, key):
    with pytest.raises(ConfigError, match=key):
        from_dict({"data": {"builtin": "mds"}, **mapping})


@pytest.mark.mpi
def test_three_sites_fit_the_same_private_transform_with_noise_of_the_calibrated_scale(mpirun):
    result = mpirun(3, [sys.executable, str(PROGRAM)])
    assert result.returncode == 0 and "SAME" in result.stdout, result.stderr
    report = json.loads(result.stdout.splitlines()[0])
    expected = report["z"] * np.sqrt(3)  # every site adds its own noise to a merged count
    assert report["std"] == pytest.approx(expected, rel=0.35)
    assert abs(report["mean"]) < 4 * expected / np.sqrt(report["n"])
    assert report["age"] == [18.0, 100.0]


@pytest.mark.mpi
@pytest.mark.slow
def test_a_private_job_charges_the_statistics_and_training_to_one_accountant(mpirun, write_job, tmp_path):
    from opacus.accountants import RDPAccountant

    job = write_job({"privacy": {"epsilon": 6.0, "delta": 1e-5, "statistics_share": 0.25},
                     "data.bounds": {"age": [18, 100]}, "data.n_patients": 1500, "federation.rounds": 2})
    result = mpirun(3, [sys.executable, "-m", "hpcsynth.cli", "run", str(job)])
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "run.h5") as f:
        p = dict(f["privacy"].attrs)
        steps = int(f["rounds"][()]["steps"].sum())
    assert p["statistics_releases"] > 30 and p["accountant_delta"] == pytest.approx(0.9e-5)
    accountant = RDPAccountant()  # the rounds table holds site 0's steps
    accountant.history = [(p["statistics_noise_multiplier"], 1.0, int(p["statistics_releases"])),
                          (p["noise_multiplier"][0], p["sample_rate"][0], steps)]
    assert p["epsilon_spent"][0] == pytest.approx(accountant.get_epsilon(0.9e-5, alphas=RDP_ORDERS), rel=1e-9)
    assert np.all((5.9 <= p["epsilon_spent"]) & (p["epsilon_spent"] <= 6.0))
