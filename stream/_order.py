"""The one sort of a batch: readings grouped by series, in time order, stable.

Every later pass (all window widths, the detector and the threshold rules, fused into one walk
per series) reads this order once. Because the window start ``floor(time / width) * width`` is
monotone in time, the (series, time) order is also a (series, window) order for every width,
so one sort serves them all.

The sort yields *runs*: ``run_sid[r]`` is the series of run r and its readings are
``run_bounds[r]:run_bounds[r + 1]`` of the sorted buffers (a run may be empty on the dense
path). A batch already in that order (one series, or sent series by series) is taken as it
is, without a copy; the check stops at the first reading out of order, so it costs next to
nothing otherwise. Dense ids (registry ids are) take a counting sort that scatters only the
permutation (4 bytes a reading) and then gathers times and values run by run, sequentially
written; a sparse id range falls back to ``np.lexsort``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from stream._constants import DENSE_SORT_SLACK

__all__ = ["Scratch", "SortedBatch", "row_bounds", "sort_batch", "sort_runs"]


@njit(cache=True, nogil=True)
def _sort_run(order, o_time, o_value, lo, hi):  # pragma: no cover - compiled
    """Stable sort of run [lo, hi) by time, unless it is already in time order (the usual case)."""
    for j in range(lo + 1, hi):
        if o_time[j] < o_time[j - 1]:
            perm = np.argsort(o_time[lo:hi], kind="mergesort")  # stable: equal times keep input order
            run_order = order[lo:hi][perm]
            run_time = o_time[lo:hi][perm]
            run_value = o_value[lo:hi][perm]
            order[lo:hi] = run_order
            o_time[lo:hi] = run_time
            o_value[lo:hi] = run_value
            return


@njit(cache=True, nogil=True)
def _row_bounds(run_bounds, o_time, width_us, o_bound):  # pragma: no cover - compiled
    """o_bound[k] = an upper bound of the aggregate rows of width k: per run, the smaller of
    its length and the number of windows its time span touches."""
    for k in range(width_us.size):
        o_bound[k] = 0
    for r in range(run_bounds.size - 1):
        lo, hi = run_bounds[r], run_bounds[r + 1]
        if hi <= lo:
            continue
        t0, t1 = o_time[lo], o_time[hi - 1]
        for k in range(width_us.size):
            w = width_us[k]
            windows = t1 // w - t0 // w + 1  # |t| < 2^62 and w ≥ 1 s: no overflow
            o_bound[k] += min(hi - lo, windows)


@njit(cache=True, nogil=True)
def _counting_sort(series_id, time, value, sid_min, bounds, order, o_time, o_value):  # pragma: no cover
    """Stable counting sort by series id, then a stable sort by time of each run.

    `bounds` must be zeroed int64[span + 1] (span = max id − sid_min + 1); on return series
    sid_min + k occupies ``bounds[k]:bounds[k + 1]``. Only `order` is scattered; times and
    values are gathered run by run into `o_time`, `o_value` (sequential writes).
    """
    n = series_id.size
    span = bounds.size - 1
    for i in range(n):
        bounds[series_id[i] - sid_min + 1] += 1
    for k in range(1, span + 1):
        bounds[k] += bounds[k - 1]
    # bounds[k] is where series k starts; filling advances it to where series k ends.
    for i in range(n):
        k = series_id[i] - sid_min
        j = bounds[k]
        order[j] = i
        bounds[k] = j + 1
    for k in range(span, 0, -1):  # back to starts: series k ends where series k + 1 starts
        bounds[k] = bounds[k - 1]
    bounds[0] = 0
    for k in range(span):
        lo, hi = bounds[k], bounds[k + 1]
        for j in range(lo, hi):
            i = order[j]
            o_time[j] = time[i]
            o_value[j] = value[i]
        _sort_run(order, o_time, o_value, lo, hi)


@njit(cache=True, nogil=True)
def _ordered(series_id, time):  # pragma: no cover - compiled
    """Whether the batch is already in (series, time) order; stops at the first reading that
    is not (the second series of an interleaved batch)."""
    for i in range(1, series_id.size):
        if series_id[i] < series_id[i - 1] or (series_id[i] == series_id[i - 1] and time[i] < time[i - 1]):
            return False
    return True


@njit(cache=True, nogil=True)
def _identity(order):  # pragma: no cover - compiled
    for j in range(order.size):
        order[j] = j


@njit(cache=True, nogil=True)
def _gather(time, value, order, o_time, o_value):  # pragma: no cover - compiled
    for j in range(order.size):
        i = order[j]
        o_time[j] = time[i]
        o_value[j] = value[i]


class Scratch:
    """Sorted-batch buffers reused from batch to batch (grown on demand), so that a batch does
    not pay fresh pages for them. Their contents are only valid until the next sort."""

    __slots__ = ("order32", "order64", "time", "value")

    def __init__(self) -> None:
        self.order32 = np.empty(0, np.int32)
        self.order64 = np.empty(0, np.int64)
        self.time = np.empty(0, np.int64)
        self.value = np.empty(0, np.float64)

    def buffers(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.time.size < n:
            self.time, self.value = np.empty(n, np.int64), np.empty(n, np.float64)
        if n < 2**31:
            if self.order32.size < n:
                self.order32 = np.empty(n, np.int32)
            return self.order32[:n], self.time[:n], self.value[:n]
        if self.order64.size < n:  # pragma: no cover - a batch of 2^31 readings
            self.order64 = np.empty(n, np.int64)
        return self.order64[:n], self.time[:n], self.value[:n]


@dataclass(frozen=True, slots=True)
class SortedBatch:
    """A batch in (series, time) order, as runs of one series each (see the module docstring)."""

    order: np.ndarray  # int32 or int64: sorted position j holds input reading order[j]
    time: np.ndarray  # int64, sorted (the caller's array when it already was)
    value: np.ndarray  # float64, sorted (likewise)
    run_sid: np.ndarray  # int32, one per run, ascending
    run_bounds: np.ndarray  # int64[runs + 1]


def sort_runs(
    series_id: np.ndarray, time: np.ndarray, value: np.ndarray, scratch: Scratch,
    sid_min: int | None = None, sid_max: int | None = None,
) -> SortedBatch:
    """Sort a validated, non-empty batch by (series_id, time), stable, into `scratch`'s buffers
    (`sid_min`, `sid_max`: the id range, when the caller knows it)."""
    n = series_id.size
    order, o_time, o_value = scratch.buffers(n)
    if sid_min is None or sid_max is None:
        sid_min, sid_max = int(series_id.min()), int(series_id.max())
    span = sid_max - sid_min + 1
    if _ordered(series_id, time):  # one series, or a batch sent series by series: no sort, no copy
        _identity(order)
        starts = np.flatnonzero(series_id[1:] != series_id[:-1]) + 1
        run_bounds = np.concatenate((np.zeros(1, np.int64), starts.astype(np.int64), np.full(1, n, np.int64)))
        return SortedBatch(order, time, value, series_id[run_bounds[:-1]], run_bounds)
    if span > DENSE_SORT_SLACK * n + 1024:
        order[:] = np.lexsort((time, series_id))
        _gather(time, value, order, o_time, o_value)
        sid_s = series_id[order]
        starts = np.flatnonzero(sid_s[1:] != sid_s[:-1]) + 1
        run_bounds = np.concatenate((np.zeros(1, np.int64), starts.astype(np.int64), np.full(1, n, np.int64)))
        return SortedBatch(order, o_time, o_value, sid_s[run_bounds[:-1]], run_bounds)
    bounds = np.zeros(span + 1, np.int64)
    _counting_sort(series_id, time, value, sid_min, bounds, order, o_time, o_value)
    return SortedBatch(order, o_time, o_value, np.arange(sid_min, sid_max + 1, dtype=np.int32), bounds)


def row_bounds(batch: SortedBatch, width_us: np.ndarray) -> np.ndarray:
    """Per width, an upper bound of the aggregate rows of `batch` (int64)."""
    bound = np.zeros(width_us.size, np.int64)
    _row_bounds(batch.run_bounds, batch.time, width_us, bound)
    return bound


def sort_batch(
    series_id: np.ndarray, time: np.ndarray, value: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sort a validated batch by (series_id, time), stable, into fresh arrays.

    Returns ``(order, series_id[order], time[order], value[order])``; ``order`` (int64) equals
    ``np.lexsort((time, series_id))``.
    """
    if series_id.size == 0:
        return np.zeros(0, np.int64), series_id[:0], time[:0], value[:0]
    s = sort_runs(series_id, time, value, Scratch())
    sid_s = np.repeat(s.run_sid, np.diff(s.run_bounds)).astype(np.int32)
    return s.order.astype(np.int64), sid_s, s.time.copy(), s.value.copy()
