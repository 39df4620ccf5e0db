"""Under mpiexec: the real `hpcsynth run`, with a failure injected on one rank in its second round."""
import os
import sys

from hpcsynth import cli
from hpcsynth.models.protocol import GradientGenerator

FAILING_RANK = int(os.environ["FAILING_RANK"])
original = GradientGenerator.local_update
calls = {"n": 0}


def failing_update(self, *args, **kwargs):
    calls["n"] += 1
    if int(os.environ.get("PMI_RANK", "0")) == FAILING_RANK and calls["n"] == 2:
        raise RuntimeError("injected failure")
    return original(self, *args, **kwargs)


GradientGenerator.local_update = failing_update
cli.main(["run", sys.argv[1]])
