"""The compile engine's persistent cache: where it lives, how `compile: auto` reads it, and a second process
with the same model and shapes loading its compiled step from the cache instead of building it."""
import json
import os
import subprocess
import sys

import pytest
import torch

from hpcsynth.models.compiled import (
    CACHE_ENV,
    WARM_DISCOUNT,
    compile_available,
    default_cache_dir,
    use_compile,
    use_compile_cache,
)

CPU = torch.device("cpu")

# one process: a small TVAE trained for two rounds of one epoch through its compiled step (the round loop, as a
# job trains), then the compile time of each round and inductor's cache counters
CHILD = """
import json
import numpy as np, pandas as pd
from torch._dynamo.utils import counters
from hpcsynth.comm import SoloComm
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.federated.loop import train_rounds
from hpcsynth.federated.registry import make_strategy
from hpcsynth.models import TVAE
from hpcsynth.models.compiled import compile_cache_warm
rng = np.random.default_rng(0)
frame = pd.DataFrame({"x": rng.normal(size=120), "y": rng.choice(["a", "b"], 120)})
transformer = TableTransformer().fit(frame)
model = TVAE(epochs=2, batch_size=60, hidden=[16], latent_dim=4, compile="on", device="cpu").setup(transformer)
warm = compile_cache_warm(model)
data, strategy, comm = model.to_device(transformer.encode(frame)), make_strategy("centralized"), SoloComm()
strategy.attach(model, data, comm)
records = train_rounds(model, data, strategy, comm, 2, 1, 60)
print(json.dumps({"warm_before": warm, "compiled": bool(model.compile_s_ > 0),
                  "compile_s": [r.compile_s for r in records], **dict(counters["inductor"])}))
"""


def run_child(cache: str) -> dict:
    env = {**os.environ, CACHE_ENV: cache, "OMP_NUM_THREADS": "1"}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=500)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_cache_directory_is_the_variable_else_under_the_users_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "hpcsynth" / "compile"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "shared"))
    assert default_cache_dir() == tmp_path / "shared"


def test_using_the_cache_points_inductor_at_it(monkeypatch, tmp_path):
    import torch._inductor.config
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "before"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    path = use_compile_cache(tmp_path / "jobs")
    assert path == tmp_path / "jobs" and path.is_dir() and os.environ[CACHE_ENV] == str(tmp_path / "jobs")
    assert cache_dir() == str(path) and torch._inductor.config.fx_graph_cache


def test_auto_compiles_shorter_runs_when_the_cache_is_warm():
    steps = 5000 // WARM_DISCOUNT
    assert not use_compile("auto", CPU, steps, 5000)
    assert use_compile("auto", CPU, steps, 5000, warm=True) == compile_available(CPU)
    assert not use_compile("auto", CPU, steps - 1, 5000, warm=True)
    assert not use_compile("off", CPU, 10**6, 5000, warm=True) and use_compile("on", CPU, 1, 5000)


@pytest.mark.skipif(not compile_available(CPU), reason="torch.compile needs a C++ compiler on the CPU")
def test_a_second_process_with_the_same_cache_loads_the_compiled_step(tmp_path):
    first, second = run_child(str(tmp_path)), run_child(str(tmp_path))
    assert first["compiled"] and not first["warm_before"]
    assert first["compile_s"][0] > 0 and first["compile_s"][1] == 0  # /rounds: the compile apart, in round 1
    assert first.get("fxgraph_cache_miss", 0) >= 1 and first.get("fxgraph_cache_hit", 0) == 0
    assert second["compiled"] and second["warm_before"]
    assert second.get("fxgraph_cache_hit", 0) >= 1 and second.get("fxgraph_cache_miss", 0) == 0
