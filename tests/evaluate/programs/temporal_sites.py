"""Under mpiexec -n 3, each rank one site's held-out and training patients: the temporal scores computed across
ranks equal, for the exact scores, those of the pooled patients in one process, and for the site-weighted ones the
held-out-weighted mean of each site scored alone; every rank ends with the same scores; rank 0 prints SAME."""
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1] / "federated" / "programs")]

import sequence_cases as cases  # noqa: E402
from every_rank import run_on_every_rank  # noqa: E402

from hpcsynth.comm import MPIComm, SoloComm  # noqa: E402
from hpcsynth.evaluate.metrics import Pooling  # noqa: E402
from hpcsynth.evaluate.temporal_metrics import TEMPORAL_METRICS  # noqa: E402
from hpcsynth.evaluate.temporal_score import score_sequences  # noqa: E402


def release(train, n_copied: int):
    """A fresh cohort with the first `n_copied` training patients of every site copied in (new keys)."""
    fresh = cases.faithful(cases.real_cohort(60, 0))
    copied_keys = train.context[cases.KEY].to_numpy()[:n_copied]
    context = train.context[train.context[cases.KEY].isin(copied_keys)]
    visits = train.visits[train.visits[cases.KEY].isin(copied_keys)]
    shift = 100_000
    return cases.from_frames(
        cases.pd.concat([fresh.context, context.assign(**{cases.KEY: context[cases.KEY] + shift})]),
        cases.pd.concat([fresh.visits, visits.assign(**{cases.KEY: visits[cases.KEY] + shift})]))


def main(world: MPIComm) -> None:
    holdout = cases.real_cohort(90, 0)
    train = cases.real_cohort(90, 7, first_key=50_000)
    synthetic = release(train, 4)  # 4 patients of the training cohort: sites 0, 1, 2 and 0 hold them
    mine_holdout = cases.split_sites(holdout, 3)[world.rank]
    mine_train = cases.split_sites(train, 3)[world.rank]
    options = {"event": cases.EVENT, "ends": {cases.EVENT: [1]}, "seed": 0}
    federated = score_sequences(mine_holdout, synthetic, world, train=mine_train, **options)
    alone = score_sequences(mine_holdout, synthetic, SoloComm(), train=mine_train, **options)
    everyone = world.allgather(federated)
    assert all(e == federated for e in everyone), "ranks disagree"
    each = world.gather((alone, mine_holdout.n_patients))
    if world.rank != 0:
        return
    pooled = score_sequences(holdout, synthetic, SoloComm(), train=train, **options)
    assert set(federated) == set(pooled) == set(TEMPORAL_METRICS), set(federated) ^ set(TEMPORAL_METRICS)
    exact = [k for k in federated if TEMPORAL_METRICS[k].pooling is Pooling.COUNTS]
    weighted = [k for k in federated if TEMPORAL_METRICS[k].pooling is Pooling.HOLDOUT]
    assert len(exact) == 9 and len(weighted) == 3
    for k in exact:
        assert np.isclose(federated[k], pooled[k], rtol=1e-12, atol=1e-12), (k, federated[k], pooled[k])
    for k in weighted:
        want = np.average([s[k] for s, _ in each], weights=[n for _, n in each])
        assert np.isclose(federated[k], want, rtol=1e-12, atol=1e-12), (k, federated[k], want)
    assert federated["trajectory_exact_match_rate"] == 4 / 64, federated["trajectory_exact_match_rate"]
    # distances are per site (each synthetic patient to that site's training patients), pooled over sites
    assert federated["trajectory_summary_match_rate"] == 4 / (3 * 64)
    assert abs(alone["length_similarity"] - federated["length_similarity"]) > 1e-9  # a site alone is not the pool
    print("SAME", flush=True)


if __name__ == "__main__":
    run_on_every_rank(main)
