"""The one sort of a batch: readings grouped by series, in time order, stable.

Every later pass (all window widths and the detector) walks this order once. Because the
window start ``floor(time / width) * width`` is monotone in time, the (series, time) order is
also a (series, window) order for every width, so one sort serves them all.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from stream._constants import DENSE_SORT_SLACK

__all__ = ["sort_batch"]


@njit(cache=True, nogil=True)
def _counting_sort(series_id, time, value, sid_min, counts, order, o_sid, o_time, o_value):  # pragma: no cover
    """Stable counting sort by series id, then a stable sort by time of each series' run
    (skipped when the run is already in time order, the usual case).

    Writes the permutation, times and values into `order`, `o_time`, `o_value` in the same pass
    (sequential reads, one scattered write each); `o_sid` is filled run by run. `counts` must be zeroed int64[span + 1]
    with span = max id − sid_min + 1.
    """
    n = series_id.size
    for i in range(n):
        counts[series_id[i] - sid_min + 1] += 1
    for k in range(1, counts.size):
        counts[k] += counts[k - 1]
    # counts[k] is now where series k starts; filling advances it to where series k ends.
    for i in range(n):
        k = series_id[i] - sid_min
        j = counts[k]
        order[j] = i
        o_time[j] = time[i]
        o_value[j] = value[i]
        counts[k] = j + 1
    start = 0
    for k in range(counts.size - 1):
        end = counts[k]
        o_sid[start:end] = sid_min + k  # a run of one series: written sequentially, not scattered
        in_order = True
        for j in range(start + 1, end):
            if o_time[j] < o_time[j - 1]:
                in_order = False
                break
        if not in_order:
            perm = np.argsort(o_time[start:end], kind="mergesort")  # stable: equal times keep input order
            run_order = order[start:end][perm]
            run_time = o_time[start:end][perm]
            run_value = o_value[start:end][perm]
            order[start:end] = run_order
            o_time[start:end] = run_time
            o_value[start:end] = run_value
        start = end


def sort_batch(
    series_id: np.ndarray, time: np.ndarray, value: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sort a validated batch by (series_id, time), stable.

    Returns ``(order, series_id[order], time[order], value[order])``; ``order`` (int64) equals
    ``np.lexsort((time, series_id))``. Dense ids (registry ids are) take a counting sort several
    times faster than lexsort; a sparse id range falls back to lexsort.
    """
    n = series_id.size
    if n == 0:
        return np.zeros(0, np.int64), series_id[:0], time[:0], value[:0]
    sid_min, sid_max = int(series_id.min()), int(series_id.max())
    span = sid_max - sid_min + 1
    if span > DENSE_SORT_SLACK * n + 1024:
        order = np.lexsort((time, series_id)).astype(np.int64, copy=False)
        return order, series_id[order], time[order], value[order]
    counts = np.zeros(span + 1, np.int64)
    order = np.empty(n, np.int64)
    o_sid, o_time, o_value = np.empty(n, np.int32), np.empty(n, np.int64), np.empty(n, np.float64)
    _counting_sort(series_id, time, value, sid_min, counts, order, o_sid, o_time, o_value)
    return order, o_sid, o_time, o_value
