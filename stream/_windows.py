"""Tumbling-window partial aggregates, for every window width, one series run at a time.

Input is the batch in (series, time) order (``stream._order``), as runs of one series. A
window is ``[bucket, bucket + width)`` with ``bucket = floor(time / width) * width`` (aligned
to the Unix epoch, floor also before 1970). Each (series, window) run of finite values becomes
one row; non-finite values are skipped. Because the bucket is monotone in time, a series run
is a sequence of window rows for every width. Each row, a contiguous range, is reduced while
it is in cache: count/sum/min/max/last, then m2 = Σ (x − mean)² over the same range, two-pass
(more accurate than Welford's one-pass update).

``StreamProcessor`` calls ``aggregate_run`` from the detector's walk (``stream._detector``),
right after scoring the run, so the run's readings are read from memory once for both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from stream._constants import US_PER_S
from stream._order import _row_bounds
from stream._results import Aggregates

__all__ = ["AggregateBuffers", "aggregate_run", "aggregate_widths", "aggregate_windows"]


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _emit(r, s, bucket, count, total, low, high, last_j, time, value,
          o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time):  # pragma: no cover - compiled
    o_sid[r] = s
    o_bucket[r] = bucket
    o_count[r] = count
    o_sum[r] = total
    o_min[r] = low
    o_max[r] = high
    # With a stable sort the row's last reading has the greatest time, and among equal times
    # the later one in input order.
    o_last[r] = value[last_j]
    o_last_time[r] = time[last_j]


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _bucket(t, end, w):  # pragma: no cover - compiled
    """floor(t / w) · w for t ≥ end, the end of the previous window: no division when t falls
    in the window right after it (the usual case)."""
    if t < end + w:
        return end
    return (t // w) * w  # numba's // floors, like Python's


@njit(cache=True, nogil=True, error_model="numpy")  # no zero test on divisions: divisors are never 0
def _three_widths(
    s, time, value, lo, hi, width_us, k0, rows,
    o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time, o_m2,
):  # pragma: no cover - compiled
    """Rows of widths k0, k0 + 1, k0 + 2 (those that exist) of the run [lo, hi), in two walks
    that update the three widths side by side, so that their sums run as independent chains:
    count/sum/min/max/last first, then m2 = Σ (x − mean)² with each row's mean."""
    nw = min(3, width_us.size - k0)
    w0 = width_us[k0]
    w1 = width_us[k0 + 1] if nw > 1 else w0
    w2 = width_us[k0 + 2] if nw > 2 else w0
    r0 = rows[k0]
    r1 = rows[k0 + 1] if nw > 1 else 0
    r2 = rows[k0 + 2] if nw > 2 else 0
    first0, first1, first2 = r0, r1, r2
    no_window = np.iinfo(np.int64).min  # end + w < every accepted time: the first bucket is divided
    e0 = e1 = e2 = no_window
    b0 = b1 = b2 = no_window
    c0 = c1 = c2 = 0
    s0 = s1 = s2 = 0.0
    lo0 = lo1 = lo2 = np.inf
    hi0 = hi1 = hi2 = -np.inf
    j0 = j1 = j2 = lo
    for j in range(lo, hi):
        x = value[j]
        if not np.isfinite(x):
            continue
        t = time[j]
        if t >= e0:
            if c0 > 0:
                _emit(r0, s, b0, c0, s0, lo0, hi0, j0, time, value,
                      o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time)
                r0 += 1
            b0 = _bucket(t, e0, w0)
            e0 = b0 + w0
            c0, s0, lo0, hi0 = 0, 0.0, np.inf, -np.inf
        if t >= e1:
            if c1 > 0 and nw > 1:
                _emit(r1, s, b1, c1, s1, lo1, hi1, j1, time, value,
                      o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time)
                r1 += 1
            b1 = _bucket(t, e1, w1)
            e1 = b1 + w1
            c1, s1, lo1, hi1 = 0, 0.0, np.inf, -np.inf
        if t >= e2:
            if c2 > 0 and nw > 2:
                _emit(r2, s, b2, c2, s2, lo2, hi2, j2, time, value,
                      o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time)
                r2 += 1
            b2 = _bucket(t, e2, w2)
            e2 = b2 + w2
            c2, s2, lo2, hi2 = 0, 0.0, np.inf, -np.inf
        c0 += 1
        s0 += x
        lo0 = x if x < lo0 else lo0
        hi0 = x if x > hi0 else hi0
        j0 = j
        c1 += 1
        s1 += x
        lo1 = x if x < lo1 else lo1
        hi1 = x if x > hi1 else hi1
        j1 = j
        c2 += 1
        s2 += x
        lo2 = x if x < lo2 else lo2
        hi2 = x if x > hi2 else hi2
        j2 = j
    if c0 == 0:  # no finite reading in the run
        return
    _emit(r0, s, b0, c0, s0, lo0, hi0, j0, time, value,
          o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time)
    rows[k0] = r0 + 1
    if nw > 1:
        _emit(r1, s, b1, c1, s1, lo1, hi1, j1, time, value,
              o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time)
        rows[k0 + 1] = r1 + 1
    if nw > 2:
        _emit(r2, s, b2, c2, s2, lo2, hi2, j2, time, value,
              o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time)
        rows[k0 + 2] = r2 + 1
    # m2 = Σ_i (x_i − mean)² with mean = sum / count, over the finite values of each row.
    r0, r1, r2 = first0, first1, first2
    mean0 = o_sum[r0] / o_count[r0]
    e0 = o_bucket[r0] + w0
    mean1 = e1 = mean2 = e2 = 0
    if nw > 1:
        mean1 = o_sum[r1] / o_count[r1]
        e1 = o_bucket[r1] + w1
    if nw > 2:
        mean2 = o_sum[r2] / o_count[r2]
        e2 = o_bucket[r2] + w2
    m0 = m1 = m2 = 0.0
    for j in range(lo, hi):
        x = value[j]
        if not np.isfinite(x):
            continue
        t = time[j]
        if t >= e0:
            o_m2[r0] = m0
            r0 += 1
            mean0 = o_sum[r0] / o_count[r0]
            e0 = o_bucket[r0] + w0
            m0 = 0.0
        if nw > 1 and t >= e1:
            o_m2[r1] = m1
            r1 += 1
            mean1 = o_sum[r1] / o_count[r1]
            e1 = o_bucket[r1] + w1
            m1 = 0.0
        if nw > 2 and t >= e2:
            o_m2[r2] = m2
            r2 += 1
            mean2 = o_sum[r2] / o_count[r2]
            e2 = o_bucket[r2] + w2
            m2 = 0.0
        d0 = x - mean0
        m0 += d0 * d0
        d1 = x - mean1
        m1 += d1 * d1
        d2 = x - mean2
        m2 += d2 * d2
    o_m2[r0] = m0
    if nw > 1:
        o_m2[r1] = m1
    if nw > 2:
        o_m2[r2] = m2


@njit(cache=True, nogil=True, error_model="numpy")  # no zero test on divisions: divisors are never 0
def aggregate_run(
    s, time, value, lo, hi, width_us, rows,
    o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time, o_m2,
):  # pragma: no cover - compiled
    """Append the rows of series `s`'s run [lo, hi) (time order) for every width k at
    ``rows[k]`` of the output columns, advancing ``rows[k]``."""
    for k0 in range(0, width_us.size, 3):
        _three_widths(s, time, value, lo, hi, width_us, k0, rows,
                      o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time, o_m2)


@njit(cache=True, nogil=True, error_model="numpy")  # no zero test on divisions: divisors are never 0
def _fill_runs(
    run_sid, run_bounds, time, value, width_us, rows,
    o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time, o_m2,
):  # pragma: no cover - compiled
    for r in range(run_sid.size):
        lo, hi = run_bounds[r], run_bounds[r + 1]
        if hi > lo:
            aggregate_run(run_sid[r], time, value, lo, hi, width_us, rows,
                          o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time, o_m2)


class AggregateBuffers:
    """Output columns for at most ``bound[k]`` rows of width k, all widths in one allocation per
    column: width k's rows start at ``start[k]``; ``rows[k]`` is its write cursor (absolute)."""

    __slots__ = ("widths_s", "start", "rows", "sid", "bucket", "count", "sum", "min", "max", "last", "last_time",
                 "m2")

    def __init__(self, widths_s: Sequence[int], bound: np.ndarray) -> None:
        self.widths_s = tuple(widths_s)
        self.start = np.zeros(len(self.widths_s) + 1, np.int64)
        np.cumsum(bound, out=self.start[1:])
        self.rows = self.start[:-1].copy()
        size = max(int(self.start[-1]), 1)
        self.sid = np.empty(size, np.int32)
        self.bucket, self.count, self.last_time = (np.empty(size, np.int64) for _ in range(3))
        self.sum, self.min, self.max, self.last, self.m2 = (np.empty(size, np.float64) for _ in range(5))

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The output columns in ``aggregate_run``'s argument order."""
        return (self.sid, self.bucket, self.count, self.sum, self.min, self.max, self.last, self.last_time, self.m2)

    def results(self) -> tuple[Aggregates, ...]:
        # Each width's rows are a contiguous slice of every column: views, not copies.
        return tuple(
            Aggregates.build(w, *(a[lo:hi] for a in self.arrays()))
            for w, lo, hi in zip(self.widths_s, self.start.tolist(), self.rows.tolist())
        )


def width_us_of(widths_s: Sequence[int]) -> np.ndarray:
    return np.array([w * US_PER_S for w in widths_s], np.int64)


def aggregate_widths(
    series_id: np.ndarray, time: np.ndarray, value: np.ndarray, widths_s: Sequence[int],
) -> tuple[Aggregates, ...]:
    """Partial aggregates for every width of a batch already in (series, time) order."""
    n = series_id.size
    if n == 0:
        return tuple(Aggregates.empty(w) for w in widths_s)
    width_us = width_us_of(widths_s)
    starts = np.flatnonzero(series_id[1:] != series_id[:-1]) + 1
    run_bounds = np.concatenate((np.zeros(1, np.int64), starts.astype(np.int64), np.full(1, n, np.int64)))
    bound = np.zeros(width_us.size, np.int64)
    _row_bounds(run_bounds, time, width_us, bound)
    out = AggregateBuffers(widths_s, bound)
    _fill_runs(series_id[run_bounds[:-1]], run_bounds, time, value, width_us, out.rows, *out.arrays())
    return out.results()


def aggregate_windows(series_id: np.ndarray, time: np.ndarray, value: np.ndarray, width_s: int) -> Aggregates:
    """Partial aggregates of one width for a batch already in (series, time) order."""
    return aggregate_widths(series_id, time, value, (width_s,))[0]
