"""Trajectories as fixed-length summaries and the privacy of a release of sequences: summaries worked by hand, a
copied training patient found by the exact-match rate and at DCR 0, a fresh cohort as far as held-out patients,
and the distances the same on Numba's simulated CUDA device as on the CPU."""
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sequence_cases as cases

from hpcsynth.evaluate.trajectories import exact_match_rate, fingerprints, summary, trajectory_privacy

sys.path.insert(0, str(Path(__file__).parents[1] / "kernels"))  # the simulator runner lives with the kernel tests
from cuda_simulator import run_simulated  # noqa: E402

LABS = list(cases.LABS)


def renamed(seqs, shift: int):
    """The same patients under new keys."""
    return cases.from_frames(seqs.context.assign(**{cases.KEY: seqs.context[cases.KEY] + shift}),
                             seqs.visits.assign(**{cases.KEY: seqs.visits[cases.KEY] + shift}))


def test_a_summary_is_worked_by_hand():
    context = pd.DataFrame({cases.KEY: [3, 1], "sex": ["F", "M"]})
    visits = pd.DataFrame({cases.KEY: [1, 1, 1, 3], cases.INDEX: [0.0, 365.25, 730.5, 0.0],
                           "hb": [10.0, np.nan, 8.0, 9.0], "plt": [1.0, 2.0, 4.0, np.nan]})
    s = summary(cases.from_frames(context, visits), ["hb", "plt"])
    assert s["sex"].tolist() == ["F", "M"]  # in the order of context
    one = s.iloc[1]
    assert (one["n_visits"], one["span"], one["interval_mean"], one["interval_sd"]) == (3, 730.5, 365.25, 0.0)
    assert (one["hb_first"], one["hb_last"], one["hb_mean"], one["hb_sd"]) == (10.0, 8.0, 9.0, 1.0)
    assert one["hb_slope"] == pytest.approx(-1.0)  # per year, over the two measured visits
    assert one["hb_missing"] == pytest.approx(1 / 3) and one["plt_missing"] == 0.0
    assert one["plt_slope"] == pytest.approx(1.5)  # least squares through (0, 1), (1, 2), (2, 4)
    other = s.iloc[0]
    assert other["n_visits"] == 1 and np.isnan(other["interval_mean"]) and np.isnan(other["hb_slope"])
    assert other["plt_missing"] == 1.0 and np.isnan(other["plt_first"])


def test_fingerprints_tell_identical_trajectories_whatever_their_key():
    real = cases.real_cohort(20, 0)
    assert (fingerprints(renamed(real, 500)) == fingerprints(real)).all()
    changed = real.visits.copy()
    changed.loc[3, "hb"] += 0.01
    assert (fingerprints(cases.from_frames(real.context, changed)) != fingerprints(real)).sum() == 1
    copies, fresh = renamed(real, 500), cases.faithful(real)
    context = pd.concat([copies.context.iloc[:5], fresh.context.iloc[:15]])
    visits = pd.concat([copies.visits, fresh.visits])
    release = cases.from_frames(context, visits[visits[cases.KEY].isin(context[cases.KEY])])
    assert exact_match_rate(release, real) == pytest.approx(5 / 20)


def test_a_copied_cohort_sits_on_the_training_patients_and_a_fresh_one_as_far_as_held_out_ones():
    train, holdout = cases.real_cohort(100, 0), cases.real_cohort(100, 9, first_key=3000)
    copied = trajectory_privacy(renamed(train, 10_000), train, holdout, LABS)
    fresh = trajectory_privacy(cases.faithful(train), train, holdout, LABS)
    assert copied["trajectory_exact_match_rate"] == 1.0 and copied["trajectory_dcr_synthetic_p5"] == 0.0
    assert copied["trajectory_summary_match_rate"] == 1.0 and copied["trajectory_nndr_median"] == 0.0
    assert fresh["trajectory_exact_match_rate"] == 0.0 and fresh["trajectory_summary_match_rate"] == 0.0
    assert 0.7 < fresh["trajectory_dcr_ratio"] < 1.4 and fresh["trajectory_nndr_median"] > 0.5
    assert copied["trajectory_dcr_closer_than_holdout_median"] == 1.0
    assert fresh["trajectory_dcr_closer_than_holdout_median"] < 0.7


# Trajectory distances of a tiny cohort, run here and, with RECORDED appended, in the CUDA simulator.
SCORES = textwrap.dedent("""
    import sequence_cases as cases
    import hpcsynth.evaluate.neighbours as neighbours
    from hpcsynth.comm import SoloComm
    from hpcsynth.evaluate.trajectories import site_distances

    def scores():
        train, holdout = cases.real_cohort(10, 0), cases.real_cohort(6, 1, first_key=100)
        synthetic = cases.real_cohort(8, 2, first_key=200)
        d = site_distances(synthetic, train, holdout, list(cases.LABS), SoloComm())
        return {"device": neighbours.NeighbourSearch().device, "nearest": d.synthetic.tolist(),
                "second": d.second.tolist(), "holdout": d.holdout.tolist()}
""")
RECORDED = textwrap.dedent("""
    import json
    with open(OUT, "w") as f:
        json.dump(scores(), f)
    print("SIMULATED OK")
""")


def test_trajectory_distances_on_the_simulated_cuda_device_equal_the_cpus(tmp_path, monkeypatch):
    import numba.cuda

    out = tmp_path / "simulated.json"
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    run_simulated(SCORES + f"OUT = {str(out)!r}\n" + RECORDED)
    simulated = json.loads(out.read_text())
    assert simulated.pop("device") == "cuda:0"
    monkeypatch.setattr(numba.cuda, "is_available", lambda: False)
    namespace = {}
    exec(SCORES, namespace)
    on_cpu = namespace["scores"]()
    assert on_cpu.pop("device") == "cpu"
    assert simulated == json.loads(json.dumps(on_cpu)) and min(on_cpu["nearest"]) > 0

