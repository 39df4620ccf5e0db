"""Privacy attacks on the released table, beyond DCR: NNDR, membership and attribute inference, k-anonymity.

Distances are exact nearest-neighbour distances (`hpcsynth.kernels`) in the space of
`hpcsynth.evaluate.privacy.privacy_features`. Per site, with its training rows T and held-out rows H:
* DCR and the share of synthetic rows closer to T than the median held-out row (0.5: as far as fresh patients);
* NNDR: nearest over second-nearest training distance (near 0: a synthetic row sits on one patient);
* membership inference: AUROC of minus the distance to the nearest synthetic row, T against H (0.5: safe);
* attribute inference: the nearest synthetic row's sensitive value, accuracy on T and its gain over H;
* k-anonymity, l-diversity and the homogeneity attack on declared quasi-identifiers (numbers in 10 bins), or on
  every attribute (`worst_anonymity`): the worst over the most identifying combinations of attributes.
Distances are gathered on rank 0 for pooled percentiles; the other scores are site-weighted by training rows.
References and choices: docs/notes/evaluate.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np
import pandas as pd

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform
from hpcsynth.evaluate.neighbours import NeighbourSearch
from hpcsynth.evaluate.privacy import dcr_scores, privacy_features

N_QI_BINS = 10
MAX_ENUMERATED = 5000  # attribute combinations ranked by distinct count in all-attribute mode


@dataclass
class Distances:
    """One site's distances to its closest training rows.

    Parameters
    ----------
    synthetic, second : ndarray
        Of every synthetic row, to its nearest and its second-nearest training row.
    holdout : ndarray
        Of every held-out row, to its nearest training row.
    """

    synthetic: np.ndarray
    second: np.ndarray
    holdout: np.ndarray


def real_distances(train: pd.DataFrame, holdout: pd.DataFrame,
                   transformer: TableTransformer) -> tuple[np.ndarray, np.ndarray]:
    """(the training rows in the distance space, every held-out row's distance to its nearest training row): the
    part of `site_distances` that no synthetic table changes."""
    reference = privacy_features(train, transformer)
    held = NeighbourSearch()(privacy_features(holdout, transformer), reference, k=1)[0][:, 0] if len(holdout) \
        else np.empty(0, dtype=np.float32)
    return reference, held


def site_distances(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame,
                   transformer: TableTransformer, real: tuple[np.ndarray, np.ndarray] | None = None,
                   features: np.ndarray | None = None) -> Distances:
    """This site's distances; `real`: the result of `real_distances` for these rows, kept from an earlier call;
    `features`: `privacy_features` of `synthetic`, when another site computed them already."""
    reference, held = real if real is not None else real_distances(train, holdout, transformer)
    k = min(2, len(reference))
    query = features if features is not None else privacy_features(synthetic, transformer)
    d, _ = NeighbourSearch()(query, reference, k=k)
    return Distances(d[:, 0], d[:, k - 1], held)


def distance_scores(parts: list[Distances]) -> dict[str, float]:
    """DCR percentiles, closer-than-holdout-median share, exact matches and NNDR over all sites' distances."""
    syn = np.concatenate([p.synthetic for p in parts]).astype(np.float64)
    second = np.concatenate([p.second for p in parts]).astype(np.float64)
    held = np.concatenate([p.holdout for p in parts]).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        nndr = np.where(second > 0, syn / second, 1.0)
    scores = {**dcr_scores(syn, held), "nndr_p5": float(np.percentile(nndr, 5)), "nndr_median": float(np.median(nndr))}
    if held.size:
        scores["dcr_closer_than_holdout_median"] = float(np.mean(syn < np.median(held)))
    return scores


def membership_auroc(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame,
                     transformer: TableTransformer, seed: int = 0) -> float:
    """AUROC of the distance-to-closest-synthetic-row attack, members = as many training rows as held-out rows."""
    from sklearn.metrics import roc_auc_score

    n = min(len(train), len(holdout))
    if n == 0:
        return float("nan")
    members = train.iloc[np.random.default_rng(seed).choice(len(train), n, replace=False)]
    reference, nearest = privacy_features(synthetic, transformer), NeighbourSearch()
    d_in = nearest(privacy_features(members, transformer), reference, k=1)[0][:, 0]
    d_out = nearest(privacy_features(holdout.iloc[:n], transformer), reference, k=1)[0][:, 0]
    return float(roc_auc_score(np.r_[np.ones(n), np.zeros(n)], -np.r_[d_in, d_out]))


def attribute_inference(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame,
                        transformer: TableTransformer, sensitive: str) -> dict[str, float]:
    """Nearest-synthetic-row guess of `sensitive` from every other column: accuracy on training and held-out rows."""
    t = transformer.transform_of(sensitive)
    if not isinstance(t, CategoricalTransform):
        raise ValueError(f"attribute inference needs a categorical sensitive column, {sensitive!r} is numeric")
    reference = privacy_features(synthetic, transformer, exclude=(sensitive,))
    guesses, nearest = t.codes(synthetic[sensitive]), NeighbourSearch()

    def accuracy(frame: pd.DataFrame) -> float:
        if frame.empty:
            return float("nan")
        idx = nearest(privacy_features(frame, transformer, exclude=(sensitive,)), reference, k=1)[1][:, 0]
        return float(np.mean(guesses[idx] == t.codes(frame[sensitive])))

    on_train, on_holdout = accuracy(train), accuracy(holdout)
    return {"accuracy": on_train, "gain": on_train - on_holdout}


def _codes(frame: pd.DataFrame, transformer: TableTransformer, name: str) -> np.ndarray:
    """One attribute as integer class codes: a category's code, a number's bin (of `N_QI_BINS` on the shared
    range; -1 when missing)."""
    t = transformer.transform_of(name)
    if isinstance(t, CategoricalTransform):
        return np.asarray(t.codes(frame[name]), dtype=np.int64)
    x = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    edges = np.linspace(t.min_, t.max_, N_QI_BINS + 1)[1:-1]
    return np.where(np.isfinite(x), np.digitize(x, edges), -1).astype(np.int64)


def _classes(frame: pd.DataFrame, transformer: TableTransformer, quasi: list[str]) -> pd.Series:
    """The equivalence class of every row over the quasi-identifiers (numbers binned on the shared range)."""
    keys = [_codes(frame, transformer, name) for name in quasi]
    return pd.Series(["|".join(map(str, key)) for key in zip(*keys)], index=frame.index, dtype=object)


def anonymity(synthetic: pd.DataFrame, train: pd.DataFrame, transformer: TableTransformer, quasi: list[str],
              sensitive: str) -> dict[str, float]:
    """k-anonymity and l-diversity of the synthetic table, and the homogeneity-attack risk for training rows."""
    t = transformer.transform_of(sensitive)
    syn_classes, syn_values = _classes(synthetic, transformer, quasi), t.codes(synthetic[sensitive])
    table = pd.DataFrame({"cls": syn_classes.to_numpy(), "s": syn_values})
    sizes = table.groupby("cls").size()
    distinct = table.groupby("cls")["s"].nunique()
    only = table.groupby("cls")["s"].first()[distinct == 1].to_dict()
    train_classes = _classes(train, transformer, quasi).to_numpy()
    exposed = [only.get(c, -1) == v for c, v in zip(train_classes, t.codes(train[sensitive]))]
    return {"k_anonymity": float(sizes.min()), "l_diversity": float(distinct.min()),
            "homogeneity_risk": float(np.mean(exposed)) if exposed else float("nan")}


def _joint(codes: dict[str, np.ndarray], combo: tuple[str, ...]) -> np.ndarray:
    """One integer per row naming its class over the attributes `combo` (their codes in mixed radix)."""
    key = np.zeros(len(codes[combo[0]]), dtype=np.int64)
    for c in combo:
        shifted = codes[c] + 1  # a missing number's bin is -1
        key = key * (int(shifted.max(initial=0)) + 1) + shifted
    return key


def identifying_combinations(synthetic: pd.DataFrame, transformer: TableTransformer, candidates: list[str],
                             max_quasi: int, limit: int) -> list[tuple[str, ...]]:
    """The `limit` combinations of 1 to `max_quasi` candidate attributes that split the synthetic table into the
    most equivalence classes (the most identifying; ties in the schema's order). Enumerated among the attributes
    with the most distinct values alone, as many as keep the combinations enumerated within `MAX_ENUMERATED`.
    Read from the synthetic table only, so every site tries the same combinations."""
    codes = {c: _codes(synthetic, transformer, c) for c in candidates}
    alone = sorted(candidates, key=lambda c: -len(np.unique(codes[c])))
    width = len(alone)
    while width > 1 and sum(comb(width, r) for r in range(1, max_quasi + 1)) > MAX_ENUMERATED:
        width -= 1
    pool = [c for c in candidates if c in alone[:width]]
    tried = [combo for r in range(1, min(max_quasi, len(pool)) + 1) for combo in combinations(pool, r)]
    distinct = [len(np.unique(_joint(codes, combo))) for combo in tried]
    order = sorted(range(len(tried)), key=lambda i: -distinct[i])  # stable: ties keep the enumeration's order
    return [tried[i] for i in order[:limit]]


def worst_anonymity(synthetic: pd.DataFrame, train: pd.DataFrame, transformer: TableTransformer, sensitive: str,
                    max_quasi: int = 3, limit: int = 50) -> dict[str, float]:
    """k-anonymity, l-diversity and homogeneity risk with every attribute a potential quasi-identifier: the worst
    of each (smallest k and l, largest risk) over the most identifying combinations of up to `max_quasi`
    attributes other than `sensitive` (`identifying_combinations`, at most `limit` of them)."""
    candidates = [c for c in transformer.columns if c != sensitive]
    found = [anonymity(synthetic, train, transformer, list(combo), sensitive)
             for combo in identifying_combinations(synthetic, transformer, candidates, max_quasi, limit)]
    if not found:
        return {"k_anonymity": float("nan"), "l_diversity": float("nan"), "homogeneity_risk": float("nan")}
    return {"k_anonymity": min(f["k_anonymity"] for f in found), "l_diversity": min(f["l_diversity"] for f in found),
            "homogeneity_risk": float(np.nanmax([f["homogeneity_risk"] for f in found]))}
