"""The one sort of a batch: readings grouped by series, in time order, stable.

Every later pass (all window widths and the detector) walks this order once. Because the
window start ``floor(time / width) * width`` is monotone in time, the (series, time) order is
also a (series, window) order for every width, so one sort serves them all.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from stream._constants import DENSE_SORT_SLACK

__all__ = ["order_by_series_time"]


@njit(cache=True, nogil=True)
def _counting_order(series_id, time, sid_min, counts, order):  # pragma: no cover - compiled
    """Stable counting sort by series id into `order`, then a stable sort by time of each
    series' run (skipped when the run is already in time order, the usual case).

    `counts` must be zeroed int64[span + 1] with span = max id - sid_min + 1.
    """
    n = series_id.size
    for i in range(n):
        counts[series_id[i] - sid_min + 1] += 1
    for k in range(1, counts.size):
        counts[k] += counts[k - 1]
    # counts[k] is now where series k starts; filling advances it to where series k ends.
    for i in range(n):
        k = series_id[i] - sid_min
        order[counts[k]] = i
        counts[k] += 1
    start = 0
    for k in range(counts.size - 1):
        end = counts[k]
        in_order = True
        for j in range(start + 1, end):
            if time[order[j]] < time[order[j - 1]]:
                in_order = False
                break
        if not in_order:
            run = order[start:end].copy()
            keys = np.empty(end - start, np.int64)
            for j in range(end - start):
                keys[j] = time[run[j]]
            perm = np.argsort(keys, kind="mergesort")  # mergesort: stable, equal times keep input order
            for j in range(end - start):
                order[start + j] = run[perm[j]]
        start = end


def order_by_series_time(series_id: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Permutation (int64) sorting a validated batch by (series_id, time), stable.

    Equivalent to ``np.lexsort((time, series_id))``; several times faster when the ids are
    dense, which they are (registry ids).
    """
    n = series_id.size
    if n == 0:
        return np.zeros(0, np.int64)
    sid_min, sid_max = int(series_id.min()), int(series_id.max())
    span = sid_max - sid_min + 1
    if span > DENSE_SORT_SLACK * n + 1024:
        return np.lexsort((time, series_id)).astype(np.int64, copy=False)
    counts = np.zeros(span + 1, np.int64)
    order = np.empty(n, np.int64)
    _counting_order(series_id, time, sid_min, counts, order)
    return order
