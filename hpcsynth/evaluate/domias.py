"""Density-based membership inference in the style of DOMIAS (van Breugel et al. 2023, AISTATS).

A generator that overfits locally puts more synthetic mass at its training rows than the population has there.
The attack scores a candidate row x by the density ratio p_syn(x) / p_ref(x): the synthetic density over the
density of real rows the generator never saw. Dividing by the reference density is what the distance attack
(`hpcsynth.evaluate.attacks.membership_auroc`) lacks: in a dense region every real row lies near a synthetic row,
member or not, and only the excess over the population tells them apart.

Per site: both densities are Gaussian kernel density estimates in the shared distance space
(`hpcsynth.evaluate.privacy.privacy_features`), each kernel as wide as its rows' spacing (`granularity`: the
median distance of a row to its nearest other row; Scott's rule, which reads the features' spread, gives a kernel
far narrower than the spacing of a few hundred rows in this space of dozens of one-hot columns, and the reference
density of a small site then follows its nearest row alone). The synthetic kernel is `SHARPEN` times as wide
(half), so that a synthetic row sitting on a training row counts more than one a typical spacing away. The
reference is the site's held-out rows, each held-out row scored leaving itself out; the members are as many of
the site's training rows. The score is the AUROC of the ratio, members against held-out rows (0.5: the release
tells nothing), site-weighted by training rows.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.evaluate.neighbours import NeighbourSearch
from hpcsynth.evaluate.privacy import privacy_features

CHUNK = 512  # query rows per block of squared distances
FLOOR = 1e-3  # the narrowest kernel, as a share of the Scott bandwidth
SHARPEN = 0.5  # the synthetic kernel's width, as a share of the release's spacing


def scott_bandwidth(x: np.ndarray) -> float:
    """Scott's rule n^(-1/(d+4)) times the mean standard deviation of the features."""
    n, d = x.shape
    return max(float(np.mean(np.std(x, axis=0))), 1e-6) * n ** (-1.0 / (d + 4))


def granularity(x: np.ndarray) -> float:
    """The median distance of a row to its nearest other row (exact nearest neighbours, `hpcsynth.kernels`), at
    least `FLOOR` times the Scott bandwidth: a release of repeated rows gets a kernel far narrower than any
    spacing of real rows, not a zero one."""
    floor = FLOOR * scott_bandwidth(x)
    if len(x) < 2:
        return floor
    return max(float(np.median(NeighbourSearch()(x, x, k=2)[0][:, 1])), floor)


def log_density(query: np.ndarray, data: np.ndarray, h: float, leave_out_self: bool = False) -> np.ndarray:
    """log of the Gaussian kernel density of `data` (bandwidth `h`) at every query row, up to the constant
    -d/2 log(2 pi) that every density of the same space has; `leave_out_self`: `query` is `data` and each row's own
    kernel is left out."""
    n = len(data) - (1 if leave_out_self else 0)
    out = np.empty(len(query))
    data = data.astype(np.float64)
    sq_data = np.sum(data ** 2, axis=1)
    for start in range(0, len(query), CHUNK):
        q = query[start:start + CHUNK].astype(np.float64)
        d2 = np.maximum(np.sum(q ** 2, axis=1)[:, None] + sq_data[None, :] - 2.0 * q @ data.T, 0.0)
        logk = -d2 / (2.0 * h * h)
        if leave_out_self:
            rows = np.arange(len(q))
            logk[rows, start + rows] = -np.inf
        out[start:start + CHUNK] = logsumexp(logk, axis=1) - np.log(max(n, 1))
    return out - data.shape[1] * np.log(h)


def domias_auroc(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame,
                 transformer: TableTransformer, seed: int = 0) -> float:
    """AUROC of the density ratio p_syn / p_ref, as many training rows (members, drawn with `seed`) as held-out
    rows (non-members, and the reference); NaN with fewer than two held-out rows or no training rows."""
    from sklearn.metrics import roc_auc_score

    n = min(len(train), len(holdout))
    if n == 0 or len(holdout) < 2 or len(synthetic) == 0:
        return float("nan")
    members = train.iloc[np.random.default_rng(seed).choice(len(train), n, replace=False)]
    syn, ref, ins = (privacy_features(f, transformer) for f in (synthetic, holdout, members))
    outs = ref[:n]
    h_syn, h_ref = SHARPEN * granularity(syn), granularity(ref)
    score_in = log_density(ins, syn, h_syn) - log_density(ins, ref, h_ref)
    score_out = log_density(outs, syn, h_syn) - log_density(outs, ref, h_ref, leave_out_self=True)
    return float(roc_auc_score(np.r_[np.ones(n), np.zeros(n)], np.r_[score_in, score_out]))
