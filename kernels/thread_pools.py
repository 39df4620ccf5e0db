"""The process's native thread pools of one kind (BLAS or OpenMP), found once.

threadpoolctl finds them by reading every loaded library, milliseconds at every call; the evaluation limits them
at every score of every round. The pools do not change once the libraries that own them are loaded, so the
controller found at the first call serves every later limit (load those libraries before asking).
"""
from __future__ import annotations

from functools import cache

from threadpoolctl import ThreadpoolController


@cache
def thread_pools(user_api: str) -> ThreadpoolController:
    """The loaded thread pools of `user_api` ("blas" or "openmp"); `.limit(limits=n)` caps them."""
    return ThreadpoolController().select(user_api=user_api)
