"""Where the evaluation's nearest-neighbour work runs: on the CUDA device in Numba's simulator (device arrays reach
the kernel, and DCR, NNDR, membership and authenticity equal the CPU's), on the CPU without one.

The simulator replaces ``numba.cuda`` for a whole process, so the GPU side runs in a child process (the kernel
tests' runner) and prints its scores; this process computes the same scores with CUDA reported absent.
"""
import json
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import hpcsynth.evaluate.neighbours as neighbours
from hpcsynth.evaluate.neighbours import NeighbourSearch

sys.path.insert(0, str(Path(__file__).parents[1] / "kernels"))  # the simulator runner lives with the kernel tests
from cuda_simulator import run_simulated  # noqa: E402

# A tiny table (20 training, 12 held-out, 16 synthetic rows: the simulator is ~30,000x slower than a GPU) and every
# nearest-neighbour score of it; run here and, with RECORDED appended, in the simulator.
SCORES = textwrap.dedent("""
    import numpy as np
    import pandas as pd
    import hpcsynth.evaluate.neighbours as neighbours
    from hpcsynth.data.transformer import TableTransformer
    from hpcsynth.evaluate.attacks import distance_scores, membership_auroc, site_distances
    from hpcsynth.evaluate.diversity import alpha_beta_authenticity
    from hpcsynth.evaluate.privacy import privacy_features

    def frame(n, seed):
        rng = np.random.default_rng(seed)
        return pd.DataFrame({"age": rng.uniform(20, 90, n).round(), "x": rng.normal(size=n),
                             "sex": rng.choice(["F", "M"], n)})

    def scores():
        train, holdout, synthetic = frame(20, 0), frame(12, 1), pd.concat([frame(12, 2), frame(20, 0).iloc[:4]])
        t = TableTransformer(categorical=["sex"]).fit(train)
        d = site_distances(synthetic, train, holdout, t)
        return {"device": neighbours.NeighbourSearch().device,
                "dcr": distance_scores([d]),
                "nearest": d.synthetic.tolist(), "second": d.second.tolist(), "holdout": d.holdout.tolist(),
                "membership_auroc": membership_auroc(synthetic, train, holdout, t),
                **alpha_beta_authenticity(privacy_features(train, t), privacy_features(synthetic, t), n_alphas=5)}
""")

# The simulated run: which array types reach the kernel, and the scores, written as JSON to OUT.
RECORDED = textwrap.dedent("""
    import json
    reached, kernel = [], neighbours.nearest_neighbours

    def recording(query, reference, **options):
        reached.append([type(x).__name__ for x in (query, reference)])
        return kernel(query, reference, **options)

    neighbours.nearest_neighbours = recording
    result = scores()
    with open(OUT, "w") as f:
        json.dump({"reached": reached, "scores": result}, f)
    print("SIMULATED OK")
""")


@pytest.fixture
def no_cuda(monkeypatch):
    """Numba reports no CUDA device (whatever this machine has)."""
    import numba.cuda

    monkeypatch.setattr(numba.cuda, "is_available", lambda: False)


def _reached(monkeypatch) -> list:
    """Record the argument types that reach the kernel from the evaluation."""
    reached, kernel = [], neighbours.nearest_neighbours

    def recording(query, reference, **options):
        reached.append((type(query), type(reference)))
        return kernel(query, reference, **options)

    monkeypatch.setattr(neighbours, "nearest_neighbours", recording)
    return reached


def test_simulated_device_receives_device_arrays_and_gives_the_cpu_scores(tmp_path, monkeypatch, no_cuda):
    out = tmp_path / "simulated.json"
    run_simulated(SCORES + f"OUT = {str(out)!r}\n" + RECORDED)
    simulated = json.loads(out.read_text())
    assert simulated["scores"].pop("device") == "cuda:0"
    assert len(simulated["reached"]) == 7, simulated["reached"]  # site distances 2, membership 2, authenticity 3
    assert all(kinds == ["FakeCUDAArray"] * 2 for kinds in simulated["reached"]), simulated["reached"]

    reached, namespace = _reached(monkeypatch), {}
    exec(SCORES, namespace)  # the same table and scores, here with no device
    on_cpu = namespace["scores"]()
    assert on_cpu.pop("device") == "cpu"
    assert simulated["scores"] == json.loads(json.dumps(on_cpu))
    assert set(reached) == {(np.ndarray, np.ndarray)}


def test_without_a_device_the_cpu_kernel_gets_numpy(monkeypatch, no_cuda):
    reached = _reached(monkeypatch)
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    search = NeighbourSearch()
    d, i = search(x, x, k=1, exclude_self=True)
    assert search.device == "cpu" and isinstance(d, np.ndarray) and isinstance(i, np.ndarray)
    assert reached == [(np.ndarray, np.ndarray)]
    with pytest.raises(RuntimeError, match="no CUDA device"):
        NeighbourSearch("cuda")


def test_a_rank_uses_the_gpu_of_its_local_rank_modulo_the_count(monkeypatch):
    import numba.cuda

    monkeypatch.setattr(numba.cuda, "is_available", lambda: True)
    monkeypatch.setattr(numba.cuda, "gpus", [SimpleNamespace(id=0), SimpleNamespace(id=1)])
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3")
    assert NeighbourSearch().device == "cuda:1"
    assert NeighbourSearch("cpu").device == "cpu"
    with pytest.raises(ValueError, match="device"):
        NeighbourSearch("gpu")
