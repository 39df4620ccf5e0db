"""The kernel tests' ground truth: a float64 brute-force k-nearest-neighbour search with the documented tie
rule (a module of its own so that tests and simulator subprocesses import it by a unique name)."""
import numpy as np


def brute_force_knn(query, reference, k, exclude_self=False):
    """Float64 direct-difference distances, sorted by (distance, index): the ground truth."""
    q = np.asarray(query, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    d = np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(axis=-1))
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), order, d
