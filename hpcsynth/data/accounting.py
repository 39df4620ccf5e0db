"""Privacy accounting shared by every private release: the epsilon an Opacus accountant has spent, and the noise
multiplier that spends a budget exactly (the transform statistics here, DP-SGD in `hpcsynth.federated.privacy`)."""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from hpcsynth.messages import ConfigError


class BudgetError(ConfigError):
    """The privacy budget cannot be met by the planned training."""


MAX_NOISE_MULTIPLIER = 1e6
# Opacus's own RDP orders reach 63, which bounds any epsilon from below by about 2 log(1/delta) / 62 (0.37 at
# delta 1e-5); higher orders let small budgets, such as the transform statistics' share, be met.
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + list(range(64, 1025, 16))


def epsilon_of(accountant, delta: float) -> float:
    """The epsilon an Opacus accountant has spent at `delta` (RDP over `RDP_ORDERS`).

    For the RDP accountant it is Opacus's own sum, over the history, of `compute_rdp` (linear in the steps), with
    each (sample rate, noise multiplier)'s one-step RDP computed once per process: Opacus recomputes it at every
    call, over all these orders, and a job asks twice a round (the epsilon spent, the look-ahead)."""
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import get_privacy_spent

    if not isinstance(accountant, RDPAccountant):
        return float(accountant.get_epsilon(delta))
    if not accountant.history:
        return 0.0
    rdp = sum([_one_step_rdp(rate, sigma) * steps for sigma, rate, steps in accountant.history])
    return float(get_privacy_spent(orders=RDP_ORDERS, rdp=rdp, delta=delta)[0])


@lru_cache(maxsize=1024)
def _one_step_rdp(sample_rate: float, noise_multiplier: float) -> np.ndarray:
    """Opacus's RDP of one subsampled Gaussian step at every order of `RDP_ORDERS` (read-only: it is shared)."""
    from opacus.accountants.analysis.rdp import compute_rdp

    rdp = compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=RDP_ORDERS)
    rdp.setflags(write=False)
    return rdp


def calibrate(epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str,
              spent: Sequence[tuple[float, float, int]] = ()) -> float:
    """The noise multiplier that spends (epsilon, delta) over `steps` steps at `sample_rate`, on top of what
    `spent` (Opacus accountant history entries, e.g. the transform statistics' releases) has spent already.

    The bisection of Opacus's `get_noise_multiplier` (tolerance 0.01, relative below epsilon 1), run on a history
    that starts with `spent`, which Opacus's own function cannot take."""
    from opacus.accountants import create_accountant

    acc = create_accountant(accountant)

    def epsilon_at(sigma: float) -> float:
        acc.history = [*spent, (sigma, sample_rate, steps)]
        return epsilon_of(acc, delta)

    def refuse(reason: str) -> BudgetError:
        return BudgetError(f"privacy.epsilon: {epsilon} cannot be met with delta {delta:.3g} over {steps} steps at "
                           f"sample rate {sample_rate:.3g} ({reason})")

    try:
        low, high = 0.0, 20.0
        eps_high = epsilon_at(high)
        while eps_high > epsilon and high <= MAX_NOISE_MULTIPLIER:
            low, high = high, 2 * high
            eps_high = epsilon_at(high)
        while eps_high <= epsilon and epsilon - eps_high > 0.01 * min(epsilon, 1.0):
            sigma = (low + high) / 2
            eps = epsilon_at(sigma)
            low, high, eps_high = (low, sigma, eps) if eps < epsilon else (sigma, high, eps_high)
    except (ValueError, RuntimeError) as err:
        raise refuse(str(err)) from None
    if eps_high > epsilon:
        raise refuse("the privacy budget is too low" + (" after the transform statistics" if spent else ""))
    return high
