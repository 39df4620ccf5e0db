"""Philox-4x32-10 against Random123's published known answers, and the Box-Muller transform against float64
numpy on the same counter words; the compiled stream equals the same source run as plain Python."""

import numpy as np
import pytest
from numba import njit

from hpcsynth.kernels.noise import gaussian_noise
from hpcsynth.kernels.philox import build, philox4x32_10

# Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter (4 words), key (2 words), result.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
philox_cpu = njit(philox4x32_10)


def words(*values):
    return tuple(np.uint64(v) for v in values)


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_philox_matches_random123_known_answers_compiled_and_in_python(counter, key, expected):
    assert tuple(int(w) for w in philox_cpu(*words(*counter, *key))) == expected
    assert tuple(int(w) for w in philox4x32_10(*words(*counter, *key))) == expected


def test_the_stream_is_four_normals_per_counter_block_keyed_by_seed_rank_and_step():
    seed, rank, step = (7 << 32) + 3, 2, 9
    z = gaussian_noise(np.empty(4 * 500, np.float32), 1.0, seed, rank, step).reshape(-1, 4).astype(np.float64)
    x = np.array([philox_cpu(*words(b, 0, step, rank, 3, 7)) for b in range(500)], dtype=np.float64)
    radius = np.sqrt(-2.0 * np.log((2.0 * x[:, [0, 2]] + 1.0) / 2.0**33))
    angle = 2.0 * np.pi * np.floor(x[:, [1, 3]] / 256.0) / 2.0**24
    expected = np.stack([radius[:, 0] * np.cos(angle[:, 0]), radius[:, 0] * np.sin(angle[:, 0]),
                         radius[:, 1] * np.cos(angle[:, 1]), radius[:, 1] * np.sin(angle[:, 1])], axis=1)
    # the own log/sin/cos polynomials stay within a few float32 units in the last place of float64 numpy
    assert np.abs(z - expected).max() <= 4 * np.spacing(np.float32(np.abs(expected).max()))


def test_compiled_stream_equals_the_same_source_run_as_plain_python():
    normals4 = build(lambda f: f).normals4  # no compiler: numpy scalars, as in Numba's CUDA simulator
    expected = [normals4(*words(b, 5, 1, 11, 0)) for b in range(64)]
    got = gaussian_noise(np.empty(256, np.float32), 1.0, 11, 1, 5).reshape(-1, 4)
    assert np.array_equal(got.view(np.uint32), np.array(expected, np.float32).view(np.uint32))

