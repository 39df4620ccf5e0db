"""Counter-based Gaussian noise: Philox-4x32-10 (Salmon et al., SC 2011) and Box-Muller, one source for CPU and GPU.

Noise for element ``i`` of step ``s`` on rank ``r`` is a pure function of ``(seed, rank, step, i)``: no
generator state to save, so a resumed job continues the stream exactly, every thread computes its own elements
in any order, and the CPU and the GPU produce the same numbers, bit for bit. The functions are plain Python
compiled by :func:`build` for a target (``numba.njit`` or ``numba.cuda.jit(device=True)``), so the two targets
cannot drift apart. :class:`Stream` defines the stream; :func:`build` says why the arithmetic looks as it does.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numba import float32, float64, int64

PHILOX_M = (0xD2511F53, 0xCD9E8D57)  # multipliers
PHILOX_W = (0x9E3779B9, 0xBB67AE85)  # Weyl key increments (golden ratio, sqrt(3) - 1)
ROUNDS = 10

_MASK = np.uint64(0xFFFFFFFF)
_32 = np.uint64(32)
_M0, _M1 = np.uint64(PHILOX_M[0]), np.uint64(PHILOX_M[1])
_W0, _W1 = np.uint64(PHILOX_W[0]), np.uint64(PHILOX_W[1])

_SQRT2 = math.sqrt(2.0)
_2_POW_M32 = 2.0**-32
_LN4_HI = float(np.float32(2.0 * math.log(2.0)))  # 2 ln 2 split so that n * part is exact for n <= 33
_LN4_LO = float(np.float32(2.0 * math.log(2.0) - _LN4_HI))
_ANGLE_STEP = float(np.float32(math.pi / 2.0 / 2.0**22))  # quarter turn / 2^22, a float32 value
# Horner coefficients: the first of each polynomial is a float32 value (it is multiplied), the others are
# float64 addends. atanh(s) = s + s^3 (1/3 + s^2/5 + ... + s^8/11), |s| <= 0.1716.
_ATANH_TOP = np.float32(1.0 / 11.0)
_ATANH = (1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0)
_SIN_TOP = np.float32(-1.0 / 39916800.0)  # -1/11!, |x| <= pi/4
_SIN = (1.0 / 362880.0, -1.0 / 5040.0, 1.0 / 120.0, -1.0 / 6.0)
_COS_TOP = np.float32(-1.0 / 3628800.0)  # -1/10!
_COS = (1.0 / 40320.0, -1.0 / 720.0, 1.0 / 24.0, -0.5)


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox-4x32-10 of counter ``(c0..c3)`` under key ``(k0, k1)``: uint64 values holding 32-bit words."""
    for r in range(ROUNDS):
        if r > 0:
            k0 = (k0 + _W0) & _MASK
            k1 = (k1 + _W1) & _MASK
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (p1 >> _32) ^ c1 ^ k0, p1 & _MASK, (p0 >> _32) ^ c3 ^ k1, p0 & _MASK
    return c0, c1, c2, c3


def _mad(a, b, c):
    """``float32(a * b + c)`` for float32 ``a``, ``b``: the product is exact, so fusing cannot change it."""
    return float32(float64(a) * float64(b) + float64(c))


class Stream(NamedTuple):
    """The generator's pieces compiled for one target (see :func:`build`).

    The stream: key ``(seed mod 2^32, seed >> 32)``; counter ``(b mod 2^32, b >> 32, step, rank)`` for block
    ``b = i // 4``. The block's four 32-bit words ``(x0, x1, x2, x3)`` give two Box-Muller pairs, elements
    ``4b, 4b+1`` from ``(x0, x1)`` and ``4b+2, 4b+3`` from ``(x2, x3)``:
    ``z = sqrt(-2 ln u1) (cos 2 pi u2, sin 2 pi u2)`` with ``u1 = (2 x + 1) / 2^33`` in ``(0, 1)`` (never 0, so
    ``|z| <= 6.77``) and ``u2`` the top 24 bits of the second word (2^24 directions on the circle)."""

    philox: Callable  # (c0, c1, c2, c3, k0, k1) -> four uint64 words
    mad: Callable  # (a, b, c) -> float32(a * b + c), a and b float32
    radius: Callable  # word -> float32 sqrt(-2 ln u1)
    direction: Callable  # word -> float32 (cos, sin) of 2 pi u2
    normals4: Callable  # (block, step, rank, k0, k1) -> the block's four float32 normals


def build(jit: Callable) -> Stream:
    """The stream compiled by ``jit`` for its target. ``normals4(block, step, rank, k0, k1)`` takes uint64
    arguments (32-bit words, ``block`` up to 64 bits) and returns ``(mad(r0, cos0), mad(r0, sin0), mad(r1,
    cos1), mad(r1, sin1))`` with ``r0, r1`` the radii of words 0 and 2 and the directions of words 1 and 3;
    a target may also combine the pieces itself in that way (the CPU kernel does, in vectorisable stages).
    The helpers are closures over the target's own compiled ``_mad`` and ``philox4x32_10``, so one source
    serves both targets.

    Why the arithmetic looks the way it does: bit-identical float32 on both targets needs operations that
    round the same everywhere. The integer mixing is exact (uint64 holding 32-bit words, products below 2^64).
    For the floats, libm and libdevice differ in ``log``/``cos`` and CUDA contracts ``a * b + c`` into a fused
    multiply-add, which rounds once instead of twice. So ``log``, ``sin`` and ``cos`` are our own polynomials,
    and every product has float32 operands computed in float64: such a product is exact (48 bits), so fused
    or not, ``a * b + c`` rounds once, to float64, then explicitly to float32. Only ``+``, ``-``, ``*``, ``/``
    and ``sqrt`` remain, which IEEE 754 rounds correctly on both targets (Numba's CUDA target without
    ``fastmath`` uses ``div.rn`` and ``sqrt.rn``). The polynomials are accurate to a few float32 units in the
    last place, far below anything a statistical test or the privacy analysis can see."""
    mad, philox = jit(_mad), jit(philox4x32_10)

    @jit
    def radius(x):
        """``sqrt(-2 ln u1)`` for ``u1 = (2x + 1) / 2^33``, ``x`` a uint64 holding a 32-bit word.

        ``2x + 1 = 2^e m``: the exponent by an integer binary search, ``m`` in ``[sqrt(1/2), sqrt(2))``,
        then ``ln m = 2 atanh((m - 1) / (m + 1))`` and ``-2 ln u1 = 2 (33 - e) ln 2 - 4 atanh(.)``.
        """
        v = int64(x) * 2 + 1
        e = 32 * int64(v >> 32 != 0)  # floor(log2 v), branch-free so that the CPU loop vectorises
        e += 16 * int64(v >> (e + 16) != 0)
        e += 8 * int64(v >> (e + 8) != 0)
        e += 4 * int64(v >> (e + 4) != 0)
        e += 2 * int64(v >> (e + 2) != 0)
        e += int64(v >> (e + 1) != 0)
        m = float64(v << (32 - e)) * _2_POW_M32  # v / 2^e, exact: v has at most 33 bits
        high = int64(m > _SQRT2)
        m *= 1.0 - 0.5 * float64(high)
        e += high
        s = float32((m - 1.0) / (m + 1.0))
        w = mad(s, s, 0.0)
        p = _ATANH_TOP
        for c in _ATANH:
            p = mad(w, p, c)
        atanh = mad(s, mad(w, p, 0.0), s)
        n = float64(33 - e)
        return float32(math.sqrt(n * _LN4_HI + n * _LN4_LO - 4.0 * float64(atanh)))

    @jit
    def direction(x):
        """``(cos, sin)`` of ``2 pi u2``, ``u2`` the top 24 bits of the 32-bit word ``x``: the nearest
        quarter turn ``q`` by integers, the rest (``|angle| <= pi/4``) by Taylor polynomials, then rotated
        by ``q`` quarter turns: ``(c, s), (-s, c), (-c, -s), (s, -c)``."""
        t = (int64(x) >> 8) + (1 << 21)
        quarter = (t >> 22) & 3
        angle = mad(float32((t & ((1 << 22) - 1)) - (1 << 21)), _ANGLE_STEP, 0.0)
        a2 = mad(angle, angle, 0.0)
        ps = _SIN_TOP
        for c in _SIN:
            ps = mad(a2, ps, c)
        sin = mad(angle, mad(a2, ps, 0.0), angle)
        pc = _COS_TOP
        for c in _COS:
            pc = mad(a2, pc, c)
        cos = mad(a2, pc, 1.0)
        odd, flip_first, flip_second = quarter & 1, ((quarter + 1) >> 1) & 1, quarter >> 1
        first = sin if odd else cos
        second = cos if odd else sin
        return (-first if flip_first else first), (-second if flip_second else second)

    @jit
    def normals4(block, step, rank, k0, k1):
        x0, x1, x2, x3 = philox(block & _MASK, block >> _32, step, rank, k0, k1)
        r0, r1 = radius(x0), radius(x2)
        c0, s0 = direction(x1)
        c1, s1 = direction(x3)
        return mad(r0, c0, 0.0), mad(r0, s0, 0.0), mad(r1, c1, 0.0), mad(r1, s1, 0.0)

    return Stream(philox, mad, radius, direction, normals4)
