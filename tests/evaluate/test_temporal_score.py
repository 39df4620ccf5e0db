"""Every temporal score in one call: the names and directions declared, the privacy scores only with training
patients, and under real mpiexec (3 ranks, one site each) the exact scores equal to the pooled patients' and the
site-weighted ones to the held-out-weighted mean of each site alone."""
import sys
from pathlib import Path

import pytest
import sequence_cases as cases

from hpcsynth.evaluate.temporal_metrics import TEMPORAL_METRICS
from hpcsynth.evaluate.temporal_score import score_sequences, temporal_report

PROGRAM = Path(__file__).parent / "programs" / "temporal_sites.py"


def test_the_report_holds_every_declared_score_and_its_parts():
    real, train = cases.real_cohort(60, 0), cases.real_cohort(60, 4, first_key=5000)
    ends = {cases.EVENT: [1]}  # progression ends a patient's record
    report = temporal_report(real, cases.faithful(real), train=train, event=cases.EVENT, ends=ends)
    assert set(report.scores) == set(TEMPORAL_METRICS) and report.scores["visits_after_end"] == 0
    assert report.directions["trajectory_detection_auroc"] == "lower"
    assert set(report.visit_shapes) == {"hb", "plt", cases.EVENT}
    assert set(report.autocorrelation) == {(lab, lag) for lab in cases.LABS for lag in (1, 2)}
    assert [p.lab for p in report.profiles] == list(cases.LABS) and set(report.falling) == set(cases.LABS)
    without = score_sequences(real, cases.faithful(real))
    assert not any(k.startswith("trajectory_dcr") or k in ("event_order_gap", "visits_after_end") for k in without)
    early = cases.faithful(real)
    early.visits[cases.EVENT] = 1  # every visit at the ending level: each patient with two or more breaks it
    assert score_sequences(real, early, ends=ends)["visits_after_end"] == int((early.lengths() > 1).sum())


@pytest.mark.mpi
def test_three_ranks_score_as_the_pooled_patients(mpirun):
    result = mpirun(3, [sys.executable, str(PROGRAM)], timeout=400)
    assert result.returncode == 0 and "SAME" in result.stdout, result.stdout + result.stderr
