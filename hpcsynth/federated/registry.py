"""The strategies by name: the one list that config validation, the job and the CLI read.

A new strategy is added here (and nowhere else by name): its module imports the contract
(`hpcsynth.federated.strategy`), never this registry.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from hpcsynth.federated.drift import FedAvgM, FedDyn, Scaffold
from hpcsynth.federated.latent_alignment import LatentAlignment
from hpcsynth.federated.local_sgd import LocalSGD
from hpcsynth.federated.sd_sharing import SDSharing
from hpcsynth.federated.strategies import Centralized, FedAvg, FedBN, FedOpt, FedProx, Isolated
from hpcsynth.federated.strategy import Strategy
from hpcsynth.federated.wrappers import SecureAggregation

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Centralized, Isolated, FedAvg, LocalSGD, FedProx, FedOpt, Scaffold, FedDyn, FedAvgM,
                              FedBN, SDSharing, LatentAlignment)}


def make_strategy(name: str, options: Mapping[str, Any] | None = None) -> Strategy:
    """The strategy `name`, given those of `options` (the federation settings, e.g. mu, server_lr) that its
    constructor takes; wrapped in `SecureAggregation` when `options["secure_aggregation"]` is true."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})") from None
    options = dict(options or {})
    accepted = inspect.signature(cls).parameters
    strategy = cls(**{k: v for k, v in options.items() if k in accepted})
    return SecureAggregation(strategy) if options.get("secure_aggregation") else strategy
