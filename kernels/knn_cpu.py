"""Exact Euclidean k-nearest neighbours on the CPU: a fast float32 candidate pass, then a certified float64 re-rank.

Why two passes. The fast way to get squared distances is the expansion ``|r|^2 - 2 q.r (+ |q|^2)``, because the
``q.r`` part is a matrix product that BLAS runs near the machine's peak. In float32 that expansion loses digits
to cancellation, so on its own it would misorder close neighbours. So:

1. **Candidate pass** (float32, tiled). Query rows are processed in blocks; for each block, one
   single-threaded BLAS ``sgemm`` per tile (``TILE_ELEMENTS`` values, 1 MiB, so it stays in L2) computes
   ``-2 q.r``, and a vectorised scan adds ``|r|^2`` and keeps, per query row, the ``C = k + EXTRA_CANDIDATES``
   smallest values. Blocks run in parallel (Numba ``prange``), so memory is ``O((N + M) D + N C)``: the full
   N x M matrix never exists.
2. **Exact re-rank** (float64). The candidates' distances are recomputed exactly from the original values
   and sorted by ``(distance, index)``, which is the tie rule.
3. **Certificate.** A rigorous bound on the float32 error (see :func:`_rerank_and_certify`) tells whether any
   row that was *not* a candidate could be closer than the k-th re-ranked one. Where it could (only near
   exact ties, e.g. duplicated rows), that query row is redone by a float64 brute-force scan. So the answer
   equals a float64 reference always, not just usually.

Both matrices are centred on the reference mean before the float32 pass: that shrinks the norms, hence the
cancellation error, hence the number of rows that need the fallback, and costs one pass over the data.
"""
from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, parallel_chunksize, prange
from threadpoolctl import threadpool_limits

from .topk import insert

TILE_ELEMENTS = 1 << 18  # one float32 tile = 1 MiB, half of a core's L2 here
EXTRA_CANDIDATES = 4
_U32 = float(np.finfo(np.float32).eps) / 2.0  # unit roundoff of float32


@njit(parallel=True, cache=True)
def _centre_cast(x, mean, scale):
    """``float32(scale * (x - mean))`` row by row, without a float64 temporary of the whole matrix."""
    n, d = x.shape
    out = np.empty((n, d), np.float32)
    for i in prange(n):
        for c in range(d):
            out[i, c] = np.float32(scale * (np.float64(x[i, c]) - mean[c]))
    return out


@njit(parallel=True, cache=True)
def _squared_norms(x):
    """Row norms squared, accumulated in float64 from float32 values."""
    out = np.empty(x.shape[0], np.float64)
    for i in prange(x.shape[0]):
        s = 0.0
        for c in range(x.shape[1]):
            v = np.float64(x[i, c])
            s += v * v
        out[i] = s
    return out


@njit(nogil=True, fastmath=True, cache=True)
def _scan_tile(tile, rnorm, j0, i0, vals, idxs, exclude_self):
    """Merge one tile of ``-2 q.r`` into the per-row sorted candidate lists (``vals``, ``idxs``).

    Most rows of most tiles hold nothing below the row's current threshold, so a branch-free vectorised
    count decides first whether a row needs the scalar insertion loop at all. The loop counter is unsigned
    so that Numba emits no negative-index wraparound, which would turn the loads into gathers. ``fastmath``
    is safe here: all values are finite (inputs are validated) and the count only gates the exact loop.
    """
    rows, cols = tile.shape
    c_last = vals.shape[1] - 1
    rn = rnorm[j0:j0 + cols]
    for r in range(rows):
        i = i0 + r
        thr = vals[i, c_last]
        row = tile[r]
        below = np.float32(0.0)
        for j in range(np.uint64(cols)):
            if row[j] + rn[j] < thr:
                below += np.float32(1.0)
        if below == 0.0:
            continue
        for j in range(cols):
            v = row[j] + rn[j]
            if v < thr and not (exclude_self and j0 + j == i):
                p = c_last
                while p > 0 and vals[i, p - 1] > v:
                    vals[i, p] = vals[i, p - 1]
                    idxs[i, p] = idxs[i, p - 1]
                    p -= 1
                vals[i, p] = v
                idxs[i, p] = j0 + j
                thr = vals[i, c_last]


@njit(parallel=True, nogil=True, cache=True)
def _candidates(qc, rc, rnorm, n_cand, n_split, exclude_self, tile_q, tile_r):
    """Float32 candidate pass over all tiles; the reference is cut into ``n_split`` chunks for parallelism.

    Returns ``vals`` and ``idxs`` of shape ``(n_split, N, C)``: for each chunk, each query row's ``C`` smallest
    values of ``|r|^2 - 2 q.r`` (float32, as computed) and their reference indices (-1 where a chunk has fewer
    than ``C`` rows). ``qc`` is already scaled by -2 (exact in binary floating point).
    """
    n = qc.shape[0]
    m = rc.shape[0]
    vals = np.full((n_split, n, n_cand), np.inf, np.float32)
    idxs = np.full((n_split, n, n_cand), -1, np.int64)
    n_qblocks = (n + tile_q - 1) // tile_q
    chunk = (m + n_split - 1) // n_split
    for w in prange(n_qblocks * n_split):
        bq = w // n_split
        s = w - bq * n_split
        i0 = bq * tile_q
        i1 = min(i0 + tile_q, n)
        flat = np.empty(tile_q * tile_r, np.float32)
        for j0 in range(s * chunk, min((s + 1) * chunk, m), tile_r):
            j1 = min(j0 + tile_r, (s + 1) * chunk, m)
            tile = flat[:(i1 - i0) * (j1 - j0)].reshape((i1 - i0, j1 - j0))
            np.dot(qc[i0:i1], rc[j0:j1].T, tile)
            _scan_tile(tile, rnorm, j0, i0, vals[s], idxs[s], exclude_self)
    return vals, idxs


@njit(nogil=True, cache=True)
def _exact_sq(q, r, i, j):
    """Squared distance of query row ``i`` and reference row ``j`` in float64 (direct differences)."""
    s = 0.0
    for c in range(q.shape[1]):
        t = np.float64(q[i, c]) - np.float64(r[j, c])
        s += t * t
    return s


@njit(parallel=True, cache=True)
def _rerank_and_certify(q, r, vals, idxs, qnorm2, rmax, k, exclude_self, out_d, out_i):
    """Exact float64 top-k from the candidates, with a certificate; uncertified rows are brute-forced.

    The bound (``u`` = float32 unit roundoff, ``D`` columns, ``q'`` and ``r'`` the centred float32 rows,
    ``R = max |r'|``): the candidate pass computes ``a = fl(fl(-2 q'.r') + fl(|r'|^2))``. A dot product of ``D``
    terms in any summation order errs by at most ``gamma_D |x||y|`` with ``gamma_D ~ D u``, and the two
    roundings add ``u`` each, so ``|a - (|r'|^2 - 2 q'.r')| <= (D + 2) u (|q'| + R)^2``; we use twice that.
    Every non-candidate of a chunk had ``a >= tau`` (the chunk's last kept value, which only decreases), so
    its centred distance is at least ``sqrt(tau + |q'|^2 - E)``. Centring and the cast to float32 moved each
    row by at most ``1.01 u |row|``, which costs at most ``1.01 u (|q'| + R)`` in distance. If that lower
    bound exceeds the k-th exact distance, no non-candidate can enter the top k (nor tie with it).
    """
    n = q.shape[0]
    m = r.shape[0]
    n_split, _, n_cand = vals.shape
    d = q.shape[1]
    for i in prange(n):
        best_d = np.full(k, np.inf)
        best_i = np.full(k, np.iinfo(np.int64).max)
        tau = np.inf
        for s in range(n_split):
            tau = min(tau, np.float64(vals[s, i, n_cand - 1]))
            for c in range(n_cand):
                j = idxs[s, i, c]
                if j >= 0:
                    insert(best_d, best_i, _exact_sq(q, r, i, j), j)
        certified = True
        if tau < np.inf:
            scale = np.sqrt(qnorm2[i]) + rmax
            err = 2.0 * (d + 2) * _U32 * scale * scale
            lower = np.sqrt(max(tau + qnorm2[i] - err, 0.0)) - 1.01 * _U32 * scale
            certified = lower > np.sqrt(best_d[k - 1]) * (1.0 + 1e-12)
        if not certified:
            best_d[:] = np.inf
            best_i[:] = np.iinfo(np.int64).max
            for j in range(m):
                if not (exclude_self and j == i):
                    insert(best_d, best_i, _exact_sq(q, r, i, j), j)
        for c in range(k):
            out_d[i, c] = np.float32(np.sqrt(best_d[c]))
            out_i[i, c] = best_i[c]


def _tile_shape(d: int) -> tuple[int, int]:
    """Query rows x reference rows of one tile. With few columns the product is cheap per output and BLAS
    prefers long rows; from 16 columns on, square tiles measured fastest here."""
    tile_q = 128 if d < 16 else 512
    return tile_q, TILE_ELEMENTS // tile_q


def _n_split(n_query: int, n_ref: int, n_threads: int, tile_q: int, tile_r: int) -> int:
    """How many reference chunks: enough work items to keep every thread busy when queries are few."""
    n_qblocks = -(-n_query // tile_q)
    want = -(-4 * n_threads // n_qblocks)
    return int(max(1, min(want, -(-n_ref // tile_r))))


def knn_euclidean_cpu(query: np.ndarray, reference: np.ndarray, k: int,
                      exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean k-NN of validated, finite, C-contiguous 2-D float arrays (see module docstring)."""
    n, m = query.shape[0], reference.shape[0]
    mean = reference.mean(axis=0, dtype=np.float64)
    qc = _centre_cast(query, mean, -2.0)
    rc = _centre_cast(reference, mean, 1.0)
    qnorm2 = _squared_norms(qc) / 4.0
    rnorm2 = _squared_norms(rc)
    n_cand = min(k + EXTRA_CANDIDATES, m - int(exclude_self))
    tile_q, tile_r = _tile_shape(query.shape[1])
    n_split = _n_split(n, m, get_num_threads(), tile_q, tile_r)
    # Each Numba thread calls BLAS on its own tile; a multi-threaded BLAS underneath would oversubscribe.
    # Work items are handed out one at a time, so a thread that the OS pauses does not hold up the rest.
    with threadpool_limits(limits=1, user_api="blas"), parallel_chunksize(1):
        vals, idxs = _candidates(qc, rc, rnorm2.astype(np.float32), n_cand, n_split, exclude_self, tile_q,
                                 tile_r)
    out_d = np.empty((n, k), np.float32)
    out_i = np.empty((n, k), np.int64)
    _rerank_and_certify(query, reference, vals, idxs, qnorm2, float(np.sqrt(rnorm2.max())), k, exclude_self,
                        out_d, out_i)
    return out_d, out_i
