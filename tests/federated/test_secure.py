"""Secure aggregation: pairwise seeds agree, masks cancel exactly, a masked buffer reveals nothing.

Several ranks are simulated in one process by calling each rank's `mask` and summing with numpy's uint64
(wrapping) addition, which is what MPI's sum does; the real Allreduce runs in test_strategies' MPI program."""
import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from scipy import stats

from hpcsynth.comm import SoloComm
from hpcsynth.federated.secure import PairwiseMasks, pair_seeds, public_bytes

STEP = 2.0 ** -24


def ranks(k: int) -> list[PairwiseMasks]:
    """k ranks after the X25519 exchange (what `PairwiseMasks.agree` does with one allgather, from fresh keys);
    fixed private keys keep the statistical checks below deterministic."""
    keys = [X25519PrivateKey.from_private_bytes(bytes([r + 1]) * 32) for r in range(k)]
    publics = [public_bytes(key) for key in keys]
    return [PairwiseMasks(r, k, pair_seeds(keys[r], publics, r)) for r in range(k)]


def updates(k: int, n: int = 50_000) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(0.1 * r, 1.0 + r, n).astype(np.float32) for r in range(k)]


def masked_total(parties: list[PairwiseMasks], values: list[np.ndarray], weights: list[float]) -> np.ndarray:
    total = np.zeros(values[0].size, dtype=np.uint64)
    for party, x, w in zip(parties, values, weights):
        total += party.mask(x, w)  # uint64 addition wraps modulo 2^64, as MPI's unsigned sum does
    return total


def test_both_ends_of_a_pair_derive_the_same_seed_and_pairs_differ():
    parties = ranks(4)
    for i in range(4):
        for j in range(4):
            if i != j:
                assert parties[i].seeds[j] == parties[j].seeds[i] and len(parties[i].seeds[j]) == 32
    seeds = {parties[i].seeds[j] for i in range(4) for j in range(4) if i < j}
    assert len(seeds) == 6


@pytest.mark.parametrize("k", [2, 3, 5])
def test_masks_cancel_exactly_in_integer_arithmetic(k):
    parties, values, weights = ranks(k), updates(k), [1.0 / (r + 2) for r in range(k)]
    fixed = [np.rint(x.astype(np.float64) * w * 2 ** 24).astype(np.int64) for x, w in zip(values, weights)]
    total = masked_total(parties, values, weights)
    np.testing.assert_array_equal(total.view(np.int64), np.sum(fixed, axis=0))


def test_masked_sum_equals_the_plain_sum_within_the_fixed_point_step():
    k = 3
    parties, values, weights = ranks(k), updates(k), [0.2, 0.3, 0.5]
    total = masked_total(parties, values, weights)
    got = parties[0].unmask(total, np.empty(total.size, dtype=np.float64))
    want = sum(w * x.astype(np.float64) for x, w in zip(values, weights))
    error = np.abs(got - want).max()
    assert error <= k * STEP / 2  # one rounding to the fixed point per rank
    assert error > STEP / 4  # the fixed point is really there (the test would notice a float sum)


def test_a_masked_buffer_is_uncorrelated_with_the_update_and_uniform():
    parties, values = ranks(3), updates(3, 100_000)
    update = values[0] + np.linspace(0, 50, values[0].size, dtype=np.float32)  # a strongly structured update
    masked = parties[0].mask(update)
    n = masked.size
    correlation = np.corrcoef(masked.view(np.int64).astype(np.float64), update)[0, 1]
    assert abs(correlation) < 5 / np.sqrt(n)
    # uniform on [0, 2^64): Kolmogorov-Smirnov on the top 53 bits, and equally filled top-byte bins
    assert stats.kstest((masked >> np.uint64(11)).astype(np.float64) / 2.0 ** 53, "uniform").pvalue > 1e-3
    assert stats.chisquare(np.bincount((masked >> np.uint64(56)).astype(np.int64), minlength=256)).pvalue > 1e-3
    # without masks the same buffer is the update itself: the checks above can fail
    plain = PairwiseMasks(0, 1, {}).mask(update)
    assert np.corrcoef(plain.view(np.int64).astype(np.float64), update)[0, 1] > 0.99


def test_a_partial_sum_that_misses_a_rank_is_still_masked():
    """What an intermediate node of MPI's reduction tree sees: ranks 0 and 1 of 3, still hidden by rank 2's pairs."""
    parties, values = ranks(3), updates(3, 100_000)
    partial = parties[0].mask(values[0]) + parties[1].mask(values[1])
    parties[2].mask(values[2])
    plain = values[0] + values[1]
    assert abs(np.corrcoef(partial.view(np.int64).astype(np.float64), plain)[0, 1]) < 5 / np.sqrt(plain.size)


def test_every_call_draws_fresh_masks():
    party = ranks(2)[0]
    x = np.zeros(1000, dtype=np.float32)
    first, second = party.mask(x), party.mask(x)
    assert not np.array_equal(first, second)


def test_a_value_outside_the_fixed_point_range_or_not_finite_is_refused():
    party = ranks(2)[0]
    with pytest.raises(ValueError, match="fixed-point range"):
        party.mask(np.array([1.0, 2.0 ** 40], dtype=np.float32))
    with pytest.raises(ValueError, match="not finite"):
        party.mask(np.array([np.nan], dtype=np.float32))


def test_agree_and_sum_on_one_rank_is_the_identity_within_the_step():
    masks = PairwiseMasks.agree(SoloComm())
    assert masks.seeds == {}
    tensor = torch.linspace(-3, 3, 1001)
    want = tensor.clone()
    masks.sum(tensor, SoloComm(), weight=1.0)
    assert float((tensor - want).abs().max()) <= STEP / 2 + 2.0 ** -23
