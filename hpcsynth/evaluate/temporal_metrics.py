"""The temporal scores' declarations: name, direction and how sites combine them, as `hpcsynth.evaluate.metrics`
declares the table scores.

They are kept apart from the registry's `METRICS` because the registry promises that every declared score is
produced by a part of the table suite (`hpcsynth.evaluate.suite`), and these are produced from sequences by
`hpcsynth.evaluate.temporal_score.score_sequences` instead. The pipeline that stores them in a run file adds them
to the registry with `declare(*TEMPORAL)` where it registers their producer.
"""
from __future__ import annotations

from hpcsynth.evaluate.metrics import Metric, Pooling

C, H, D = Pooling.COUNTS, Pooling.HOLDOUT, Pooling.DISTANCES
TEMPORAL: tuple[Metric, ...] = (
    # exact from counts merged over sites (hpcsynth.evaluate.temporal)
    Metric("visit_column_shapes", "higher", C), Metric("lab_time_gap", "lower", C),
    Metric("autocorr_lag1_gap", "lower", C), Metric("autocorr_lag2_gap", "lower", C),
    Metric("length_similarity", "higher", C), Metric("interval_similarity", "higher", C),
    Metric("event_order_gap", "lower", C),
    # the release's patients with a visit after one at a level that ends follow-up (data.sequence.ends)
    Metric("visits_after_end", "lower", C),
    # site-weighted by held-out patients (hpcsynth.evaluate.temporal_detection, temporal_tstr)
    Metric("trajectory_detection_auroc", "lower", H),
    Metric("temporal_tstr_r2", "higher", H), Metric("temporal_trtr_r2", "higher", H),
    # privacy per trajectory (hpcsynth.evaluate.trajectories): distances gathered on rank 0; copies exact
    Metric("trajectory_dcr_synthetic_p5", "higher", D), Metric("trajectory_dcr_holdout_p5", "higher", D),
    Metric("trajectory_dcr_ratio", "higher", D), Metric("trajectory_dcr_closer_than_holdout_median", "lower", D),
    Metric("trajectory_nndr_p5", "higher", D), Metric("trajectory_nndr_median", "higher", D),
    Metric("trajectory_summary_match_rate", "lower", D), Metric("trajectory_exact_match_rate", "lower", C))
TEMPORAL_METRICS: dict[str, Metric] = {m.name: m for m in TEMPORAL}
# the columns of a longitudinal job's printed table: fidelity, within-patient structure, utility, privacy
SUMMARY = ("visit_column_shapes", "length_similarity", "interval_similarity", "autocorr_lag1_gap", "event_order_gap",
           "trajectory_detection_auroc", "temporal_tstr_r2", "trajectory_dcr_ratio")


def sequence_table(scores: dict[str, dict[str, float]]) -> str:
    """The printed comparison of a longitudinal job: one row per strategy (isolated: the sites' mean, one site
    alone), the summary scores and the wall time, with each score's direction below."""
    import pandas as pd

    from hpcsynth.federated.registry import STRATEGIES

    rows = {(f"{name} (one site alone, mean)" if STRATEGIES[name].releases_per_site else name):
            {k: s.get(k, float("nan")) for k in (*SUMMARY, "wall_s")} for name, s in scores.items()}
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("strategy").reset_index()
    signs = ", ".join(f"{k} {'+' if TEMPORAL_METRICS[k].direction == 'higher' else '-'}" for k in SUMMARY)
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        return ("What each strategy releases, scored against the consortium's pooled held-out patients:\n"
                f"{table.round(4).to_string(index=False)}\n(+ higher / - lower is better: {signs}, wall_s -)")
