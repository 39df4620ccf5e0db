"""Privacy attacks on the released table, beyond DCR: NNDR, membership and attribute inference, k-anonymity.

Distances are exact nearest-neighbour distances (`hpcsynth.kernels`) in the space of
`hpcsynth.evaluate.privacy.privacy_features`. Per site, with its training rows T and held-out rows H:
* DCR and the share of synthetic rows closer to T than the median held-out row (0.5: as far as fresh patients);
* NNDR: nearest over second-nearest training distance (near 0: a synthetic row sits on one patient);
* membership inference: AUROC of minus the distance to the nearest synthetic row, T against H (0.5: safe);
* attribute inference: the nearest synthetic row's sensitive value, accuracy on T and its gain over H;
* k-anonymity, l-diversity and the homogeneity attack on declared quasi-identifiers (numbers in 10 bins).
Distances are gathered on rank 0 for pooled percentiles; the other scores are site-weighted by training rows.
References and choices: docs/notes/evaluate.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.data.transforms import CategoricalTransform
from hpcsynth.evaluate.neighbours import NeighbourSearch
from hpcsynth.evaluate.privacy import dcr_scores, privacy_features

N_QI_BINS = 10


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
                   transformer: TableTransformer, real: tuple[np.ndarray, np.ndarray] | None = None) -> Distances:
    """This site's distances; `real`: the result of `real_distances` for these rows, kept from an earlier call."""
    reference, held = real if real is not None else real_distances(train, holdout, transformer)
    k = min(2, len(reference))
    d, _ = NeighbourSearch()(privacy_features(synthetic, transformer), reference, k=k)
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


def _classes(frame: pd.DataFrame, transformer: TableTransformer, quasi: list[str]) -> pd.Series:
    """The equivalence class of every row over the quasi-identifiers (numbers binned on the shared range)."""
    keys = []
    for name in quasi:
        t = transformer.transform_of(name)
        if isinstance(t, CategoricalTransform):
            keys.append(t.codes(frame[name]))
        else:
            x = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            edges = np.linspace(t.min_, t.max_, N_QI_BINS + 1)[1:-1]
            keys.append(np.where(np.isfinite(x), np.digitize(x, edges), -1))
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
