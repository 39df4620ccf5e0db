"""Numba's on-disk cache for a kernel whose code lives partly in other files.

Numba keys a cached kernel by its own file's timestamp and its own bytecode: after a change to a function it
inlines from another module (the Philox generator of `philox.py`), it would load stale machine code. Left
uncached, such a kernel compiles in every process: on every rank of every private job, for the DP noise.
`cache_with_sources` keys the cache by the contents of those other files too, so the kernel compiles once per
version of its sources.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from numba.core.caching import FunctionCache


class _SourcesCache(FunctionCache):
    """Numba's function cache with the digest of the kernel's other source files in every index key."""

    def __init__(self, py_func, digest: str) -> None:
        super().__init__(py_func)
        self._digest = digest

    def _index_key(self, sig, codegen):
        return (*super()._index_key(sig, codegen), self._digest)


def cache_with_sources(dispatcher, *sources: Path):
    """Turn on `dispatcher`'s on-disk cache, keyed also by the contents of `sources`; returns the dispatcher.
    Where Numba finds no writable cache location, the kernel compiles in every process, as uncached."""
    digest = hashlib.sha256(b"".join(Path(s).read_bytes() for s in sources)).hexdigest()
    try:
        dispatcher._cache = _SourcesCache(dispatcher.py_func, digest)
    except RuntimeError:
        pass
    return dispatcher
