"""A k-best list kept sorted by ``(distance, index)``: the tie rule every exact kernel shares."""
from numba import njit


@njit(nogil=True, cache=True)
def insert(best_d, best_i, d, j):
    """Insert ``(d, j)`` into the sorted lists if it comes before their last entry; the last entry drops out.

    Comparing the index as well as the distance makes the result independent of the order in which
    candidates arrive, so tiled, split and re-ranked searches all return the lower index at a tie.
    """
    k = best_d.shape[0]
    if d > best_d[k - 1] or (d == best_d[k - 1] and j >= best_i[k - 1]):
        return
    p = k - 1
    while p > 0 and (best_d[p - 1] > d or (best_d[p - 1] == d and best_i[p - 1] > j)):
        best_d[p] = best_d[p - 1]
        best_i[p] = best_i[p - 1]
        p -= 1
    best_d[p] = d
    best_i[p] = j
