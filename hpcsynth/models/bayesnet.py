"""A discrete Bayesian network whose every statistic is a count, so federated training is exact.

Discretisation. Numbers go through the shared quantile transform (`NumericTransform`) to u = Phi(z), and are cut
into `n_bins` equal-probability bins of u (bin b holds quantiles [b/B, (b+1)/B)); a missing value is one more
state. Categories (and binaries) keep their levels, the missing level included. Decoding draws u uniformly
within the bin and sends it back through the shared transform, so values come out in the original units and
within the bin's quantile range.

Structure. The fast default is the Chow-Liu tree (Chow & Liu 1968): the maximum-weight spanning tree of the
pairwise mutual information, which maximises the likelihood among trees; it needs one table of counts per pair
of columns. The alternative is the BIC score (Schwarz 1978) with at most `max_parents` parents, maximised by
greedy hill climbing over edge additions from the empty graph (BIC is decomposable, so a move changes one
family's score; after adding an edge into X only X's candidate moves are recounted). Deletions and reversals
are not searched (with a bounded in-degree, the add-only greedy search is the one PrivBayes uses too): the
result is a good-scoring I-map, but an edge oriented early is kept, so a collider a -> s <- b can come out as a
triangle when a score tie orients the first edge away from s (ties go to the lower column index).

Parameters. Each conditional probability table is (N(x, pa) + prior) / (N(pa) + k * prior), the posterior mean
under a symmetric Dirichlet(prior) (Heckerman et al. 1995).

Federation. Every statistic above is a sum over rows, so each site counts its own rows and the counts are
summed with `comm.Allreduce` (float64 integers: the sum is exact whatever the order). Every site then runs the
same deterministic search on the same sums, so federated training equals centralized training on the pooled
rows bit for bit: structure, counts and tables. `fit_counts(data, comm)` is the collective entry point the
training job uses for this family; the strategy only decides whether counts are shared (centralized, fedavg)
or kept (isolated). There are no rounds and no gradients.

Differential privacy (PrivBayes-style, Zhang et al. 2017, with noisy counts instead of the exponential
mechanism). With `epsilon`, every site perturbs its counts before they leave it: a share `structure_share` of
epsilon goes to the pairwise tables of the Chow-Liu search, the rest to the family tables of the CPTs.
Under add/remove-one-row neighbours a row adds exactly one count to each of T tables, so the L1 sensitivity
of a release is T and its L2 sensitivity sqrt(T). `noise="laplace"` adds Laplace(T / eps_part) to every cell
(Dwork et al. 2006); `noise="gaussian"` adds N(0, sigma^2) with sigma = sqrt(2 ln(1.25 / delta_part)) sqrt(T) /
eps_part (Dwork & Roth 2014, Thm A.1; needs eps_part < 1), delta split evenly between the two releases. Sequential
composition gives `epsilon_spent_` (and `delta_spent_`) per site. Noisy counts are clipped at zero before use
(post-processing). BIC search queries counts adaptively and is not offered with DP.

Sampling is ancestral in topological order, one vectorised draw per column. Conditions on discrete columns use
likelihood weighting (Fung & Chang 1990): evidence columns are fixed, every draw is weighted by the probability
of the evidence given its sampled parents, and `oversample * n` weighted draws are resampled to `n`
(sampling-importance-resampling). Columns downstream of the evidence are drawn exactly given it; ancestors are
reweighted, exactly in the limit of many draws; when the evidence columns are roots the weights are constant and
the conditional sample is exact.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import ndtr, ndtri

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform, NumericTransform
from hpcsynth.comm import Communicator, SoloComm
from hpcsynth.models.conditions import condition_codes

STRUCTURES = ("chow_liu", "bic")  # how the network's structure is learnt
NOISES = ("laplace", "gaussian")  # PrivBayes-style noise on the counts
_U_EPS = 1e-6


# -- counting ---------------------------------------------------------------------------------------------------
def family_counts(codes: np.ndarray, cards: list[int], child: int, parents: list[int]) -> np.ndarray:
    """Counts of (parent configuration, child state), shape (prod parent cards, child card), parents row-major."""
    index = np.zeros(codes.shape[0], dtype=np.int64)
    for p in parents:
        index = index * cards[p] + codes[:, p]
    configs = int(np.prod([cards[p] for p in parents], dtype=np.int64))
    index = index * cards[child] + codes[:, child]
    return np.bincount(index, minlength=configs * cards[child]).astype(np.float64).reshape(configs, cards[child])


def mutual_information(table: np.ndarray) -> float:
    """I(X; Y) in nats from a table of (non-negative) joint counts."""
    n = table.sum()
    if n <= 0:
        return 0.0
    p = table / n
    outer = p.sum(1, keepdims=True) * p.sum(0, keepdims=True)
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / outer[mask])))


def bic_score(table: np.ndarray, n: float) -> float:
    """Log-likelihood of a family at its maximum-likelihood CPT minus (log n / 2) x free parameters."""
    rows = table.sum(1, keepdims=True)
    mask = table > 0
    loglik = float(np.sum(table[mask] * np.log(table[mask] / np.broadcast_to(rows, table.shape)[mask])))
    return loglik - 0.5 * math.log(max(n, 1.0)) * table.shape[0] * (table.shape[1] - 1)


def chow_liu(mi: np.ndarray) -> list[list[int]]:
    """Parents of each column in the maximum-MI spanning tree rooted at column 0 (Prim; ties to the lowest index)."""
    d = mi.shape[0]
    parents: list[list[int]] = [[] for _ in range(d)]
    in_tree = np.zeros(d, dtype=bool)
    in_tree[0] = True
    best, link = mi[0].copy(), np.zeros(d, dtype=np.int64)
    for _ in range(d - 1):
        j = int(np.argmax(np.where(in_tree, -np.inf, best)))
        parents[j] = [int(link[j])]
        in_tree[j] = True
        closer = mi[j] > best
        best, link = np.where(closer, mi[j], best), np.where(closer, j, link)
    return parents


def privatise(counts: np.ndarray, n_tables: int, epsilon: float, noise: str, delta: float,
              rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """`counts` (the concatenation of `n_tables` count tables) plus noise for (epsilon, delta)-DP; and its scale
    (Laplace b, or Gaussian sigma). See the module docstring for the calibration."""
    if noise == "laplace":
        scale = n_tables / epsilon
        return counts + rng.laplace(0.0, scale, counts.shape), scale
    scale = math.sqrt(2.0 * math.log(1.25 / delta)) * math.sqrt(n_tables) / epsilon
    return counts + rng.normal(0.0, scale, counts.shape), scale


def topological_order(parents: list[list[int]]) -> list[int]:
    """The columns, every parent before its children (the order of ancestral sampling)."""
    order, placed = [], set()
    while len(order) < len(parents):
        for i, pa in enumerate(parents):
            if i not in placed and all(p in placed for p in pa):
                order.append(i)
                placed.add(i)
    return order


# -- discretisation on the shared transform -------------------------------------------------------------------
class Discretiser:
    """Encoded matrix <-> integer states per column, on the shared transform (see the module docstring)."""

    def __init__(self, transformer: TableTransformer, n_bins: int) -> None:
        self.transformer = transformer
        self.n_bins = n_bins
        self.cards, self.starts, start = [], [], 0
        for t in transformer.transforms_:
            if not isinstance(t, (NumericTransform, CategoricalTransform)):
                raise ValueError(f"column {t.spec.name!r}: the Bayesian network bins the quantile transform's "
                                 f"scores; fit the table transform with numeric='quantile'")
            self.starts.append(start)
            start += t.width
            self.cards.append(n_bins + int(t.has_missing) if isinstance(t, NumericTransform) else t.width)

    def codes(self, matrix: np.ndarray) -> np.ndarray:
        out = np.empty((matrix.shape[0], len(self.cards)), dtype=np.int64)
        for i, (t, s) in enumerate(zip(self.transformer.transforms_, self.starts)):
            if isinstance(t, NumericTransform):
                u = ndtr(matrix[:, s].astype(np.float64))
                out[:, i] = np.minimum((u * self.n_bins).astype(np.int64), self.n_bins - 1)
                if t.has_missing:
                    out[matrix[:, s + 2] > 0.5, i] = self.n_bins
            else:
                out[:, i] = np.argmax(matrix[:, s:s + t.width], axis=1)
        return out

    def decode(self, codes: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
        columns = {}
        for i, t in enumerate(self.transformer.transforms_):
            c = codes[:, i]
            if isinstance(t, NumericTransform):
                u = (np.minimum(c, self.n_bins - 1) + rng.uniform(size=c.size)) / self.n_bins
                block = ndtri(np.clip(u, _U_EPS, 1 - _U_EPS))[:, None]
                if t.has_missing:
                    missing = (c == self.n_bins)[:, None]
                    block = np.hstack([block, np.where(missing, [-np.inf, 0.0], [0.0, -np.inf])])
                columns[t.spec.name] = t.decode(block, rng).to_numpy()
            else:
                columns[t.spec.name] = t.from_codes(c).to_numpy()
        return pd.DataFrame(columns)


class BayesianNetwork:
    """Discrete Bayesian network: `BayesianNetwork().fit(df).sample(1000, conditions={"sex": "F"})` in one
    process; federated (and exact) through `fit_counts(data, comm)`."""

    _SAMPLE, _NOISE = 1, 3
    name = "bayesnet"
    trains_by = "counts"
    has_latent = False
    dp_sgd = False
    default_numeric = "quantile"  # the table transform the training job fits for this family

    def __init__(self, n_bins: int = 10, structure: str = "chow_liu", max_parents: int = 2, prior: float = 1.0,
                 epsilon: float | None = None, delta: float = 1e-6, noise: str = "laplace",
                 structure_share: float = 0.3, oversample: int = 20, seed: int = 0, categorical: list[str] = (),
                 time: str | None = None, event: str | None = None) -> None:
        self.n_bins = n_bins
        self.structure = structure
        self.max_parents = max_parents
        self.prior = prior
        self.epsilon = epsilon
        self.delta = delta
        self.noise = noise
        self.structure_share = structure_share
        self.oversample = oversample
        self.seed = seed
        self.categorical = categorical
        self.time = time
        self.event = event

    # -- single process -------------------------------------------------------------------------------------
    def make_transformer(self) -> TableTransformer:
        """The unfitted table transform this family bins: the quantile map for numbers."""
        return TableTransformer(self.categorical, self.time, self.event, numeric=self.default_numeric)

    def fit(self, frame: pd.DataFrame) -> "BayesianNetwork":
        transformer = self.make_transformer().fit(frame)
        self.setup(transformer)
        self.fit_counts(transformer.encode(frame), SoloComm())
        return self

    # -- the training job's entry points --------------------------------------------------------------------
    def setup(self, transformer: TableTransformer, stream: int = 0, local_rank: int = 0) -> "BayesianNetwork":
        """Bind the shared transform; `stream` keys this site's noise and sampling draws (no device is used)."""
        self._check()
        self.transformer_ = transformer
        self.stream_ = stream
        self.discretiser_ = Discretiser(transformer, self.n_bins)
        return self

    def to_device(self, matrix: np.ndarray) -> np.ndarray:
        """Counting runs in numpy on the host: the encoded rows are used as they are."""
        return matrix

    def fit_counts(self, data: np.ndarray, comm: Communicator) -> float:
        """Learn structure and tables from counts summed over `comm` (collective); return the mean negative
        log-likelihood of this site's discretised rows under the fitted network."""
        codes = self.discretiser_.codes(np.asarray(data))
        cards = self.discretiser_.cards
        rng = np.random.default_rng([self.seed, self.stream_, self._NOISE])
        self.epsilon_spent_, self.delta_spent_ = 0.0, 0.0
        self.n_rows_ = float(comm.Allreduce(np.array([float(len(codes))]), "sum")[0])
        if self.structure == "chow_liu":
            self.parents_ = self._chow_liu(codes, cards, comm, rng)
        else:
            self.parents_ = self._hill_climb(codes, cards, comm)
        tables = [family_counts(codes, cards, i, pa) for i, pa in enumerate(self.parents_)]
        flat = self._release(np.concatenate([t.ravel() for t in tables]), len(tables), 1.0 - self.structure_share,
                             comm, rng)
        self.counts_, offset = [], 0
        for t in tables:
            self.counts_.append(flat[offset:offset + t.size].reshape(t.shape))
            offset += t.size
        self.cpts_ = [self._cpt(c) for c in self.counts_]
        self.order_ = topological_order(self.parents_)
        return -float(self.log_likelihood(codes).mean())

    def _check(self) -> None:
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure: expected one of {STRUCTURES}, got {self.structure!r}")
        if self.noise not in NOISES:
            raise ValueError(f"noise: expected one of {NOISES}, got {self.noise!r}")
        if self.n_bins < 2 or self.max_parents < 1 or self.prior <= 0 or self.oversample < 1:
            raise ValueError("n_bins >= 2, max_parents >= 1, prior > 0 and oversample >= 1 are required")
        if self.epsilon is not None:
            if self.epsilon <= 0 or not 0 < self.structure_share < 1:
                raise ValueError("epsilon must be positive and structure_share in (0, 1)")
            if self.structure != "chow_liu":
                raise ValueError("differential privacy is implemented for the Chow-Liu structure only")
            largest_share = self.epsilon * max(self.structure_share, 1 - self.structure_share)
            if self.noise == "gaussian" and not (0 < self.delta < 1 and largest_share < 1):
                raise ValueError("the Gaussian mechanism needs every epsilon share below 1 and delta in (0, 1)")

    def _release(self, counts: np.ndarray, n_tables: int, share: float, comm: Communicator,
                 rng: np.random.Generator) -> np.ndarray:
        """This site's counts, noised when DP is on (charged to the budget), then summed over the sites."""
        if self.epsilon is not None:
            eps = self.epsilon * share
            delta = self.delta / 2 if self.noise == "gaussian" else 0.0
            counts, _ = privatise(counts, n_tables, eps, self.noise, delta, rng)
            self.epsilon_spent_ += eps
            self.delta_spent_ += delta
        return comm.Allreduce(np.ascontiguousarray(counts, dtype=np.float64), "sum")

    def _chow_liu(self, codes: np.ndarray, cards: list[int], comm: Communicator,
                  rng: np.random.Generator) -> list[list[int]]:
        d = len(cards)
        pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
        if not pairs:
            return [[]]
        tables = [family_counts(codes, cards, i, [j]) for i, j in pairs]
        flat = self._release(np.concatenate([t.ravel() for t in tables]), len(tables), self.structure_share,
                             comm, rng)
        mi, offset = np.zeros((d, d)), 0
        for (i, j), t in zip(pairs, tables):
            mi[i, j] = mi[j, i] = mutual_information(np.maximum(flat[offset:offset + t.size], 0.0).reshape(t.shape))
            offset += t.size
        return chow_liu(mi)

    def _hill_climb(self, codes: np.ndarray, cards: list[int], comm: Communicator) -> list[list[int]]:
        """Greedy BIC edge additions; each batch of candidate families is counted locally and summed."""
        d, n = len(cards), self.n_rows_
        parents: list[list[int]] = [[] for _ in range(d)]
        ancestor = np.zeros((d, d), dtype=bool)          # ancestor[a, b]: a path a -> ... -> b exists
        current = np.zeros(d)
        gain = np.full((d, d), -np.inf)                  # gain[i, j]: BIC change of adding j -> i
        for i in range(d):
            self._rescore(i, parents, codes, cards, comm, current, gain, n)
        while True:
            valid = ~ancestor & ~np.eye(d, dtype=bool)    # adding j -> i is a cycle when i is j's ancestor
            masked = np.where(valid, gain, -np.inf)
            i, j = np.unravel_index(int(np.argmax(masked)), masked.shape)
            if not masked[i, j] > 0:
                return parents
            parents[i] = sorted(parents[i] + [int(j)])
            ancestor[np.ix_(ancestor[:, j] | (np.arange(d) == j), ancestor[i] | (np.arange(d) == i))] = True
            self._rescore(int(i), parents, codes, cards, comm, current, gain, n)

    def _rescore(self, i: int, parents: list[list[int]], codes: np.ndarray, cards: list[int], comm: Communicator,
                 current: np.ndarray, gain: np.ndarray, n: float) -> None:
        """Recount column i's family and every one-parent extension of it (one Allreduce) and update its gains."""
        configs = int(np.prod([cards[p] for p in parents[i]], dtype=np.int64))
        # an extension whose added penalty exceeds the largest possible likelihood gain, n log min(k_i, k_j)
        # (conditional mutual information is at most either entropy), can never be chosen: it is not counted
        candidates = [j for j in range(len(cards)) if j != i and j not in parents[i]
                      and 0.5 * math.log(max(n, 1.0)) * (cards[i] - 1) * configs * (cards[j] - 1)
                      < n * math.log(min(cards[i], cards[j]))]
        if len(parents[i]) >= self.max_parents:
            candidates = []
        families = [parents[i]] + [sorted(parents[i] + [j]) for j in candidates]
        tables = [family_counts(codes, cards, i, pa) for pa in families]
        flat = comm.Allreduce(np.concatenate([t.ravel() for t in tables]), "sum")
        scores, offset = [], 0
        for t in tables:
            scores.append(bic_score(flat[offset:offset + t.size].reshape(t.shape), n))
            offset += t.size
        current[i] = scores[0]
        gain[i, :] = -np.inf
        for j, s in zip(candidates, scores[1:]):
            gain[i, j] = s - current[i]

    def _cpt(self, counts: np.ndarray) -> np.ndarray:
        smoothed = np.maximum(counts, 0.0) + self.prior
        return smoothed / smoothed.sum(axis=1, keepdims=True)

    # -- what the job reads for checkpoints ------------------------------------------------------------------
    def shared_parameters(self) -> torch.Tensor:
        """The summed family counts, one flat buffer (the whole fitted model, with `local_state`'s structure)."""
        return torch.from_numpy(np.concatenate([c.ravel() for c in self.counts_]))

    def local_state(self) -> bytes:
        return json.dumps({"parents": self.parents_, "cards": self.discretiser_.cards,
                           "epsilon_spent": self.epsilon_spent_, "delta_spent": self.delta_spent_}).encode()

    # -- inference and sampling ------------------------------------------------------------------------------
    def _configs(self, codes: np.ndarray, i: int) -> np.ndarray:
        index = np.zeros(codes.shape[0], dtype=np.int64)
        for p in self.parents_[i]:
            index = index * self.discretiser_.cards[p] + codes[:, p]
        return index

    def log_likelihood(self, codes: np.ndarray) -> np.ndarray:
        """log P(row) of discretised rows under the network."""
        return sum(np.log(self.cpts_[i][self._configs(codes, i), codes[:, i]]) for i in range(len(self.cpts_)))

    def _forward(self, m: int, evidence: dict[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`m` ancestral draws with evidence columns fixed, and their log likelihood weights."""
        codes = np.zeros((m, len(self.cpts_)), dtype=np.int64)
        log_weight = np.zeros(m)
        for i in self.order_:
            probs = self.cpts_[i][self._configs(codes, i)]
            if i in evidence:
                codes[:, i] = evidence[i]
                log_weight += np.log(probs[:, evidence[i]])
            else:
                cdf = np.cumsum(probs, axis=1)
                u = rng.uniform(size=(m, 1)) * cdf[:, -1:]
                codes[:, i] = np.minimum((u > cdf).sum(axis=1), probs.shape[1] - 1)
        return codes, log_weight

    def sample(self, n: int, seed: int | None = None, conditions: dict[str, Any] | None = None) -> pd.DataFrame:
        """`n` synthetic rows in the original units; `conditions` fixes discrete columns (likelihood weighting)."""
        key = self.seed if seed is None else seed
        rng = np.random.default_rng([key, self.stream_, self._SAMPLE])
        evidence = condition_codes(self.transformer_, conditions)
        if evidence:
            draws, log_weight = self._forward(n * self.oversample, evidence, rng)
            weight = np.exp(log_weight - log_weight.max())
            codes = draws[rng.choice(len(draws), size=n, p=weight / weight.sum())]
        else:
            codes, _ = self._forward(n, {}, rng)
        return self.discretiser_.decode(codes, rng)
