"""Secure aggregation: pairwise masks that hide every site's buffer and cancel exactly in the sum.

The scheme is the pairwise-masking core of Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving
Machine Learning" (CCS 2017), without its dropout recovery: an MPI job fails as a whole, so no rank can drop out
of a round and leave its masks uncancelled.
"""
from __future__ import annotations

import numpy as np
import torch
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hpcsynth.comm import Communicator
from hpcsynth.federated.strategy import Reducer

SCALE_BITS = 24
_CHUNK = 1 << 17  # values per pass (1 MiB of uint64): encoding and masking stay in cache


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def pair_seeds(private_key: X25519PrivateKey, public_keys: list[bytes], rank: int) -> dict[int, bytes]:
    """The 32-byte seed this rank shares with every other rank: HKDF-SHA256 of the X25519 shared secret, bound to
    the (lower, higher) rank pair so that every pair's seed differs even if keys were reused."""
    seeds = {}
    for peer, public in enumerate(public_keys):
        if peer == rank:
            continue
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(public))
        low, high = sorted((rank, peer))
        info = b"hpcsynth secure aggregation v1 pair %d %d" % (low, high)
        seeds[peer] = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)
    return seeds


class PairwiseMasks:
    """This rank's side of secure aggregation: encode, mask, and decode.

    `mask` and `unmask` are the two halves of `sum`, separate so that a test can combine several ranks' buffers
    in one process. Every rank must make the same sequence of calls: the call counter keys the masks.

    1. Key agreement, once per run. Every rank draws an X25519 key pair (RFC 7748), the public keys are exchanged
       with one `allgather`, and each pair (i, j) derives the same 32-byte seed s_ij = HKDF-SHA256(X25519(i, j))
       (RFC 5869) with the pair in the `info` field. Nobody else can compute s_ij (the Diffie-Hellman assumption).
    2. Fixed point. A float buffer x becomes q = round(w * x * 2^24) in int64, read as uint64: integer addition
       modulo 2^64 is exact and associative, so masks cancel bit for bit, which float addition cannot promise.
    3. Masks, every call. Rank i adds the keystream AES-256-CTR(s_ij, nonce = call counter) for each j > i and
       subtracts it for each j < i. The mask of a pair is uniform on Z_2^64 and appears once with each sign, so the
       sum over all ranks is sum_i q_i exactly, while any single buffer, or any partial sum that misses a rank
       (the intermediate results of MPI's reduction tree), is uniformly distributed and independent of the data
       (a one-time pad). The counter in the nonce gives every call fresh masks; keys are fresh for every run.
    4. One Allreduce of the uint64 buffer (unsigned, because signed overflow is undefined in the C code of the MPI
       library), then decode: sum / 2^24. The error is at most K/2 fixed-point steps (K ranks) plus the rounding of
       the result to float32.

    Threat model: honest-but-curious participants and observers of the traffic. It does not protect against a
    rank that deviates from the protocol (it could send a wrong public key or a poisoned update), and it hides
    buffers, not the aggregate: use differential privacy for what the aggregate reveals. The masked buffer is
    8 bytes per parameter, twice the float32 buffer.

    Parameters
    ----------
    rank, size : int
        This rank and the number of ranks that sum.
    seeds : dict of int to bytes
        The 32-byte seed this rank shares with each peer (`pair_seeds`).
    scale_bits : int, default 24
        Fixed-point precision: values are encoded as round(w * x * 2^scale_bits).
    """

    def __init__(self, rank: int, size: int, seeds: dict[int, bytes], scale_bits: int = SCALE_BITS) -> None:
        self.rank = rank
        self.size = size
        self.seeds = seeds
        self.scale = float(2 ** scale_bits)
        self.calls = 0
        # the largest |w * x| whose K-fold sum still fits in int64
        self.bound = 2.0 ** 63 / (self.scale * size)

    @classmethod
    def agree(cls, comm: Communicator) -> PairwiseMasks:
        """One X25519 agreement per pair: fresh key pairs, public keys exchanged with one allgather (collective)."""
        key = X25519PrivateKey.generate()
        publics = comm.allgather(public_bytes(key))
        return cls(comm.rank, comm.size, pair_seeds(key, publics, comm.rank))

    def _keystreams(self) -> list[tuple[bool, object]]:
        """(add?, AES-256-CTR encryptor) per peer for this call: + for higher peers, - for lower ones."""
        nonce = self.calls.to_bytes(8, "big") + bytes(8)  # the low 64 bits count blocks within the call
        self.calls += 1
        return [(peer > self.rank, Cipher(algorithms.AES(seed), modes.CTR(nonce)).encryptor())
                for peer, seed in sorted(self.seeds.items())]

    def mask(self, values: np.ndarray, weight: float = 1.0) -> np.ndarray:
        """round(weight * values * 2^scale_bits) plus this rank's masks, as uint64 (mod 2^64)."""
        flat = values.reshape(-1)
        out = np.empty(flat.size, dtype=np.uint64)
        signed = out.view(np.int64)
        factor = weight * self.scale
        scratch = np.empty(min(_CHUNK, flat.size), dtype=np.float64)
        zeros = memoryview(bytes(8 * scratch.size))
        stream = bytearray(8 * scratch.size + 15)  # update_into wants a block's slack
        streams = self._keystreams()
        for start in range(0, flat.size, _CHUNK):
            stop = min(start + _CHUNK, flat.size)
            n = stop - start
            fixed = scratch[:n]
            np.multiply(flat[start:stop], factor, out=fixed, dtype=np.float64)
            np.rint(fixed, out=fixed)
            largest = float(np.abs(fixed).max()) / self.scale
            if not largest < self.bound:  # also catches NaN and infinity
                raise ValueError(f"secure aggregation: a value of magnitude {largest:.3g} is not finite or exceeds "
                                 f"the fixed-point range ({self.bound:.3g} for {self.size} ranks)")
            np.copyto(signed[start:stop], fixed, casting="unsafe")
            chunk = out[start:stop]
            for add, encryptor in streams:
                encryptor.update_into(zeros[:8 * n], stream)
                keystream = np.frombuffer(stream, dtype=np.uint64, count=n)
                (np.add if add else np.subtract)(chunk, keystream, out=chunk)
        return out

    def unmask(self, total: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Decode the sum of every rank's masked buffer into the float array `out` (any float dtype)."""
        np.multiply(total.view(np.int64), 1.0 / self.scale, out=out.reshape(-1), casting="unsafe")
        return out

    def sum(self, tensor: torch.Tensor, comm: Communicator, weight: float = 1.0) -> None:
        """tensor <- sum over ranks of weight_k * tensor_k, in place, with one Allreduce of one masked buffer."""
        host = tensor.detach().cpu().numpy()  # a view for a CPU tensor, a copy for a GPU one
        self.unmask(comm.Allreduce(self.mask(host, weight), "sum"), host)
        if tensor.device.type != "cpu":
            tensor.copy_(torch.from_numpy(host))


class MaskedSum(Reducer):
    """The reducer `SecureAggregation` installs: every weighted sum goes through the pairwise masks (the weighting
    is folded into the fixed-point encoding, which is a pass over the buffer anyway).

    Parameters
    ----------
    masks : PairwiseMasks
        The masks the ranks agreed on (`PairwiseMasks.agree`).
    """

    def __init__(self, masks: PairwiseMasks) -> None:
        self.masks = masks

    def weighted_sum(self, tensor: torch.Tensor, weight: float, comm: Communicator) -> None:
        with torch.no_grad():
            self.masks.sum(tensor, comm, weight)
