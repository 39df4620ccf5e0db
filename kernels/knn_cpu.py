"""Exact Euclidean k-nearest neighbours on the CPU: a fast float32 candidate pass, then a certified float64 re-rank.

The float32 expansion ``|r|^2 - 2 q.r`` runs near the BLAS peak but loses digits to cancellation, so it only
proposes ``k + EXTRA_CANDIDATES`` candidates per query row; they are re-ranked exactly in float64, and a bound
on the float32 error certifies that no other row could be closer (where it cannot, near exact ties, the row is
redone by float64 brute force). So the answer always equals a float64 reference. The steps are in
:func:`knn_euclidean_cpu`; measurements and the alternatives tried (bfloat16 on AMX) in benchmarks/README.md.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.util
import os

import numpy as np
from llvmlite import ir
from numba import get_num_threads, njit, parallel_chunksize, prange, types
from numba.extending import intrinsic

from .thread_pools import thread_pools
from .topk import insert

TILE_ELEMENTS = 1 << 18  # one float32 tile = 1 MiB, half of a core's L2 here
EXTRA_CANDIDATES = 4
USE_MKL = True  # False: numpy's BLAS even where MKL is available (the tests run both)
_U32 = float(np.finfo(np.float32).eps) / 2.0  # unit roundoff of float32


@functools.cache
def _mkl() -> tuple[int, int]:
    """Addresses of MKL's Fortran ``sgemm_`` and ``MKL_Set_Num_Threads_Local`` in torch's ``libtorch_cpu``, or
    ``(0, 0)`` where torch (or a build of it with MKL) is not installed.

    torch's x86 wheels link MKL statically and export its BLAS symbols; loading the library with ctypes does
    not import torch (about 0.4 s, once per process). MKL's single-threaded ``sgemm`` reaches about twice
    OpenBLAS's rate on the thin tiles of the candidate pass (module docstring).
    """
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return 0, 0
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(spec.origin), "lib", "libtorch_cpu.so"))
        return (ctypes.cast(lib.sgemm_, ctypes.c_void_p).value or 0,
                ctypes.cast(lib.MKL_Set_Num_Threads_Local, ctypes.c_void_p).value or 0)
    except (OSError, AttributeError):
        return 0, 0


@intrinsic
def _call_sgemm(typingctx, address, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Call the Fortran ``sgemm_`` at ``address``; every argument is a pointer, passed as an integer. An address
    given at run time (not a ctypes global) keeps the calling kernel cacheable."""
    sig = types.void(*([types.uint64] * 14))

    def codegen(context, builder, signature, args):
        ptr = ir.IntType(8).as_pointer()
        fn = builder.inttoptr(args[0], ir.FunctionType(ir.VoidType(), [ptr] * 13).as_pointer())
        builder.call(fn, [builder.inttoptr(x, ptr) for x in args[1:]])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _call_set_threads(typingctx, address, n_threads):
    """``MKL_Set_Num_Threads_Local(n_threads)`` at ``address``; returns the previous setting."""
    sig = types.int32(types.uint64, types.int32)

    def codegen(context, builder, signature, args):
        fn = builder.inttoptr(args[0], ir.FunctionType(ir.IntType(32), [ir.IntType(32)]).as_pointer())
        return builder.call(fn, [args[1]])

    return sig, codegen


@intrinsic
def _below_mask64(typingctx, values, norms, threshold):
    """Bit ``t`` set where ``values[t] + norms[t] < threshold``, for the 64 float32 at each address: four vector
    adds and compares into mask registers, combined into one ``uint64``. Numba cannot express the
    compare-to-bitmask itself, and the scan needs the bits, not a count, to visit only the values below the
    threshold; 64 at a time amortise the loop and the branch."""
    sig = types.uint64(types.uint64, types.uint64, types.float32)

    def codegen(context, builder, signature, args):
        vec = ir.VectorType(ir.FloatType(), 64)
        a = builder.load(builder.inttoptr(args[0], vec.as_pointer()), align=4)
        b = builder.load(builder.inttoptr(args[1], vec.as_pointer()), align=4)
        i32 = ir.IntType(32)
        one = builder.insert_element(ir.Constant(vec, ir.Undefined), args[2], ir.Constant(i32, 0))
        splat = builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined),
                                       ir.Constant(ir.VectorType(i32, 64), [0] * 64))
        below = builder.fcmp_ordered("<", builder.fadd(a, b), splat)
        return builder.bitcast(below, ir.IntType(64))

    return sig, codegen


@intrinsic
def _lowest_bit(typingctx, mask):
    """Index of the lowest set bit of a non-zero ``uint64`` (``cttz``)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return sig, codegen


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


@njit(nogil=True, cache=True)
def _push(vals, idxs, i, v, j):
    """Insert ``(v, j)`` into row ``i``'s sorted candidate list (``v`` is below its last value); return the
    new last value, the row's threshold."""
    p = vals.shape[1] - 1
    while p > 0 and vals[i, p - 1] > v:
        vals[i, p] = vals[i, p - 1]
        idxs[i, p] = idxs[i, p - 1]
        p -= 1
    vals[i, p] = v
    idxs[i, p] = j
    return vals[i, vals.shape[1] - 1]


@njit(nogil=True, cache=True)
def _scan_tile(tile, rnorm, j0, i0, vals, idxs, exclude_self):
    """Merge one tile of ``-2 q.r`` into the per-row sorted candidate lists (``vals``, ``idxs``).

    Once a row's list is full, values below its threshold are rare (about ``C ln(M / C)`` per row over the
    whole reference, out of ``M``), so the row is tested 64 values at a time and only the set bits of the
    mask are visited; each is rechecked, since the threshold drops as candidates arrive. Until the list is
    full (threshold infinite), and in the tail of fewer than 64, every value is visited. The float32 sums
    are the same in both paths, so the candidates do not depend on which path found them.
    """
    rows, cols = tile.shape
    c_last = vals.shape[1] - 1
    full = cols - cols % 64
    tile_address = tile.ctypes.data
    norm_address = rnorm.ctypes.data + 4 * j0
    for r in range(rows):
        i = i0 + r
        thr = vals[i, c_last]
        row_address = tile_address + 4 * r * cols
        c0 = 0
        while c0 < cols:
            if c0 < full and thr < np.inf:
                mask = _below_mask64(row_address + 4 * c0, norm_address + 4 * c0, thr)
                while mask != 0:
                    j = c0 + np.int64(_lowest_bit(mask))
                    mask &= mask - np.uint64(1)
                    v = tile[r, j] + rnorm[j0 + j]
                    if v < thr and not (exclude_self and j0 + j == i):
                        thr = _push(vals, idxs, i, v, j0 + j)
            else:
                for j in range(c0, min(c0 + 64, cols)):
                    v = tile[r, j] + rnorm[j0 + j]
                    if v < thr and not (exclude_self and j0 + j == i):
                        thr = _push(vals, idxs, i, v, j0 + j)
            c0 += 64


@njit(parallel=True, nogil=True, cache=True)
def _candidates(qc, rc, rnorm, n_cand, n_split, exclude_self, tile_q, tile_r, sgemm, set_threads):
    """Float32 candidate pass over all tiles; the reference is cut into ``n_split`` chunks for parallelism.

    Returns ``vals`` and ``idxs`` of shape ``(n_split, N, C)``: for each chunk, each query row's ``C`` smallest
    values of ``|r|^2 - 2 q.r`` (float32, as computed) and their reference indices (-1 where a chunk has fewer
    than ``C`` rows). ``qc`` is already scaled by -2 (exact in binary floating point). ``sgemm`` and
    ``set_threads`` are MKL's addresses from :func:`_mkl`, or 0 for numpy's ``np.dot``.
    """
    n, d = qc.shape
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
        # Fortran sgemm_ arguments by address: C^T = R Q^T in column-major is C = Q R^T in row-major.
        ints = np.empty(6, np.int32)  # m, n, k, lda, ldb, ldc
        floats = np.array([1.0, 0.0], np.float32)  # alpha, beta
        chars = np.array([ord("T"), ord("N")], np.uint8)
        previous = _call_set_threads(set_threads, np.int32(1)) if set_threads != 0 else np.int32(0)
        for j0 in range(s * chunk, min((s + 1) * chunk, m), tile_r):
            j1 = min(j0 + tile_r, (s + 1) * chunk, m)
            tile = flat[:(i1 - i0) * (j1 - j0)].reshape((i1 - i0, j1 - j0))
            if sgemm != 0:
                ints[0], ints[1], ints[2], ints[3], ints[4], ints[5] = j1 - j0, i1 - i0, d, d, d, j1 - j0
                at, af, ac = ints.ctypes.data, floats.ctypes.data, chars.ctypes.data
                _call_sgemm(sgemm, ac, ac + 1, at, at + 4, at + 8, af, rc.ctypes.data + 4 * j0 * d, at + 12,
                            qc.ctypes.data + 4 * i0 * d, at + 16, af + 4, flat.ctypes.data, at + 20)
            else:
                np.dot(qc[i0:i1], rc[j0:j1].T, tile)
            _scan_tile(tile, rnorm, j0, i0, vals[s], idxs[s], exclude_self)
        if set_threads != 0:
            _call_set_threads(set_threads, previous)
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
    """Exact Euclidean k-NN of validated, finite, C-contiguous 2-D float arrays.

    1. **Candidate pass** (float32, tiled). Query rows are processed in blocks; for each block, one
       single-threaded ``sgemm`` per tile (``TILE_ELEMENTS`` values, 1 MiB, so it stays in L2) computes
       ``-2 q.r``, and a vectorised scan (64 values at a time, :func:`_below_mask64`) adds ``|r|^2`` and keeps,
       per query row, the ``C = k + EXTRA_CANDIDATES`` smallest values. Blocks run in parallel (Numba
       ``prange``), so memory is ``O((N + M) D + N C)``: the full N x M matrix never exists. The ``sgemm`` is
       MKL's where torch ships it (see :func:`_mkl`), else numpy's BLAS.
    2. **Exact re-rank** (float64). The candidates' distances are recomputed exactly from the original values
       and sorted by ``(distance, index)``, which is the tie rule.
    3. **Certificate.** A rigorous bound on the float32 error (see :func:`_rerank_and_certify`) tells whether
       any row that was *not* a candidate could be closer than the k-th re-ranked one. Where it could (only
       near exact ties, e.g. duplicated rows), that query row is redone by a float64 brute-force scan.

    Both matrices are centred on the reference mean before the float32 pass: that shrinks the norms, hence the
    cancellation error, hence the number of rows that need the fallback, and costs one pass over the data."""
    n, m = query.shape[0], reference.shape[0]
    mean = reference.mean(axis=0, dtype=np.float64)
    qc = _centre_cast(query, mean, -2.0)
    rc = _centre_cast(reference, mean, 1.0)
    qnorm2 = _squared_norms(qc) / 4.0
    rnorm2 = _squared_norms(rc)
    n_cand = min(k + EXTRA_CANDIDATES, m - int(exclude_self))
    tile_q, tile_r = _tile_shape(query.shape[1])
    n_split = _n_split(n, m, get_num_threads(), tile_q, tile_r)
    # Each Numba thread calls BLAS on its own tile; a multi-threaded BLAS underneath would oversubscribe
    # (MKL is set to one thread per call inside the kernel, numpy's BLAS here).
    # Work items are handed out one at a time, so a thread that the OS pauses does not hold up the rest.
    sgemm, set_threads = _mkl() if USE_MKL else (0, 0)
    with thread_pools("blas").limit(limits=1), parallel_chunksize(1):
        vals, idxs = _candidates(qc, rc, rnorm2.astype(np.float32), n_cand, n_split, exclude_self, tile_q,
                                 tile_r, sgemm, set_threads)
    out_d = np.empty((n, k), np.float32)
    out_i = np.empty((n, k), np.int64)
    _rerank_and_certify(query, reference, vals, idxs, qnorm2, float(np.sqrt(rnorm2.max())), k, exclude_self,
                        out_d, out_i)
    return out_d, out_i
