"""The metric registry is the one table of directions: every score the suite and the training job produce is
declared, the report and the summary table take their directions and headline scores from it, and no other
module keeps a direction table of its own."""
import dataclasses
import re
from pathlib import Path

import pytest

from hpcsynth.evaluate import metrics
from hpcsynth.evaluate.metrics import METRICS, Metric, Pooling, declare, directions, headline, per_round
from hpcsynth.evaluate.report import RunSection, _scores_table, summary_table
from hpcsynth.evaluate.suite import PARTS, Evaluation, selected

REPO = Path(__file__).resolve().parents[2]
# scores the job writes besides the evaluation's: its wall time, and the privacy it spent (`/privacy`)
JOB_SCORES = ("wall_s", "epsilon_spent", "whitebox_membership_auroc")  # whitebox: jobs/evaluate.py


def test_every_declaration_is_well_formed_and_every_registered_part_names_declared_metrics():
    for name, m in METRICS.items():
        assert m.name == name and m.direction in ("higher", "lower") and isinstance(m.pooling, Pooling)
        assert set(m.needs) <= set(metrics.Role.__args__), name
    produced = [name for p in PARTS for name in p.metrics]
    assert len(produced) == len(set(produced))  # one part per score
    assert set(produced) | set(JOB_SCORES) == set(METRICS)  # and no declared score is left without a producer
    assert all(METRICS[n].pooling in (Pooling.HOLDOUT, Pooling.TRAIN) for p in PARTS if p.local for n in p.metrics)


def test_the_training_jobs_scores_are_the_per_round_ones_and_the_suite_computes_them_with_what_they_read():
    rounds = per_round()
    assert {"quality", "csf", "gsf", "detection_auroc", "tstr_auroc", "dcr_ratio"} <= set(rounds)
    chosen = selected(rounds)
    computed = {name for p in chosen for name in p.metrics}
    assert set(rounds) <= computed and "cox_hr_in_ci" in computed  # csf reads the Cox comparison
    assert "membership_auroc" not in computed and len(chosen) < len(PARTS)
    assert [p for p in PARTS if p in chosen] == chosen  # in evaluation order
    source = (REPO / "jobs" / "strategy_run.py").read_text()
    assert "per_round()" in source and "DIRECTIONS" not in source


def test_a_name_is_declared_once_and_an_undeclared_score_has_no_direction():
    with pytest.raises(ValueError, match="declared twice"):
        declare(Metric("quality", "higher", Pooling.COUNTS))
    with pytest.raises(KeyError, match="'made_up' is not declared"):
        directions(["quality", "made_up"])


def test_no_other_module_keeps_a_table_of_directions():
    pattern = re.compile(r"""["'][a-z0-9_]+["']\s*:\s*["'](higher|lower)["']""")
    folders = ("hpcsynth", "jobs", "benchmarks", "kernels", "slurm")
    files = [p for folder in folders for p in (REPO / folder).rglob("*.py")]
    offenders = [str(p.relative_to(REPO)) for p in files if pattern.search(p.read_text())]
    assert offenders == []


def test_the_report_and_the_summary_take_directions_and_headline_scores_from_the_registry(monkeypatch):
    flipped = dict(METRICS, quality=dataclasses.replace(METRICS["quality"], direction="lower", headline=False),
                   wasserstein=dataclasses.replace(METRICS["wasserstein"], headline=True))
    monkeypatch.setattr(metrics, "METRICS", flipped)
    ev = Evaluation(scores={"quality": 0.9, "wasserstein": 0.1, "dcr_ratio": 1.2})
    assert ev.directions == {"quality": "lower", "wasserstein": "lower", "dcr_ratio": "higher"}
    assert "<td>quality</td><td>0.9000</td><td>lower is better</td>" in _scores_table(ev)
    table = summary_table([RunSection("fedavg", ev), RunSection("isolated", ev)])
    title, header = table.splitlines()[0], table.splitlines()[1].split()
    assert "against the consortium's pooled held-out rows" in title
    assert header == ["strategy", *headline()] and "quality" not in header and "wasserstein" in header
    assert "wasserstein -" in table.splitlines()[-1] and "dcr_ratio +" in table.splitlines()[-1]
