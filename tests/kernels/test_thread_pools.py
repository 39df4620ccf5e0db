"""The thread pools found once: the same controller at every call, and its limit caps the pools it found."""
from __future__ import annotations

import numpy as np  # noqa: F401  (loads the BLAS whose pool is capped)
from threadpoolctl import threadpool_info

from hpcsynth.kernels.thread_pools import thread_pools


def test_the_pools_are_found_once_and_their_limit_holds_inside_and_is_undone_after():
    pools = thread_pools("blas")
    assert pools is thread_pools("blas")
    assert pools.lib_controllers, "numpy's BLAS is loaded, so a BLAS pool must be found"
    before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    with pools.limit(limits=1):
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    assert [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] == before
