"""Tumbling-window partial aggregates of one batch, for every window width in one walk.

Input is the batch in (series, time) order (``stream._order``). A window is
``[bucket, bucket + width)`` with ``bucket = floor(time / width) * width`` (aligned to the Unix
epoch, floor also before 1970). Each (series, window) run of finite values becomes one row;
non-finite values are skipped. Because the bucket is monotone in time, that one order is a
(series, window) order for every width, so each pass serves all widths at once, no per-reading
Python:

1. count the rows of every width, 2. find where each row starts, 3. reduce each row (a
contiguous range) while it is in cache: count/sum/min/max/last, then m2 = Σ (x − mean)² over
the same range, two-pass (more accurate than Welford's one-pass update).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from stream._constants import US_PER_S
from stream._results import Aggregates

__all__ = ["aggregate_widths", "aggregate_windows"]


@njit(cache=True, nogil=True)
def _count_windows(series_id, time, value, width_us, o_rows):  # pragma: no cover - compiled
    """o_rows[k] = rows of width k (``width_us[k]``)."""
    k_widths = width_us.size
    bucket_end = np.zeros(k_widths, np.int64)  # exclusive end of the current row's window
    for k in range(k_widths):
        o_rows[k] = 0
    prev_sid = -1
    for j in range(series_id.size):
        if not np.isfinite(value[j]):
            continue
        t = time[j]
        new_series = series_id[j] != prev_sid
        prev_sid = series_id[j]
        # Time ascends within a series, so a reading before the current window's end is in it:
        # the integer division is only paid when a new window starts.
        for k in range(k_widths):
            if new_series or t >= bucket_end[k]:
                o_rows[k] += 1
                w = width_us[k]
                bucket_end[k] = (t // w) * w + w  # numba's // floors, like Python's


@njit(cache=True, nogil=True)
def _fill_windows(
    series_id, time, value, width_us,
    o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time, o_m2, o_start,
):  # pragma: no cover - compiled
    """Rows of (series, window) runs, row-major [width, row]; the batch must be in (series,
    time) order, stable. One walk finds where every width's rows start; then each row, a
    contiguous range of the batch, is reduced while it is in cache."""
    n = series_id.size
    k_widths = width_us.size
    r = np.full(k_widths, -1, np.int64)
    bucket_end = np.zeros(k_widths, np.int64)
    prev_sid = -1
    for j in range(n):
        if not np.isfinite(value[j]):
            continue
        t = time[j]
        s = series_id[j]
        new_series = s != prev_sid
        prev_sid = s
        for k in range(k_widths):
            if new_series or t >= bucket_end[k]:
                rk = r[k] + 1
                r[k] = rk
                w = width_us[k]
                bucket = (t // w) * w  # bucket = floor(t / width) · width
                bucket_end[k] = bucket + w
                o_sid[k, rk] = s
                o_bucket[k, rk] = bucket
                o_start[k, rk] = j
    for k in range(k_widths):
        rows = r[k] + 1
        for rk in range(rows):
            lo = o_start[k, rk]
            hi = o_start[k, rk + 1] if rk + 1 < rows else n  # readings between are non-finite
            count = 0
            total = 0.0
            low = np.inf
            high = -np.inf
            last_j = lo
            for j in range(lo, hi):
                x = value[j]
                if np.isfinite(x):
                    count += 1
                    total += x
                    if x < low:
                        low = x
                    if x > high:
                        high = x
                    last_j = j
            # m2 = Σ_i (x_i − mean)²  with mean = sum / count, over the finite values of the run.
            mean = total / count
            m2 = 0.0
            for j in range(lo, last_j + 1):
                x = value[j]
                if np.isfinite(x):
                    d = x - mean
                    m2 += d * d
            o_count[k, rk] = count
            o_sum[k, rk] = total
            o_min[k, rk] = low
            o_max[k, rk] = high
            # In (series, time) order with a stable sort the run's last reading has the greatest
            # time, and among equal times the later one in input order.
            o_last[k, rk] = value[last_j]
            o_last_time[k, rk] = time[last_j]
            o_m2[k, rk] = m2


def aggregate_widths(
    series_id: np.ndarray, time: np.ndarray, value: np.ndarray, widths_s: Sequence[int],
) -> tuple[Aggregates, ...]:
    """Partial aggregates for every width of a batch already in (series, time) order."""
    width_us = np.array([w * US_PER_S for w in widths_s], np.int64)
    k_widths = width_us.size
    rows = np.zeros(k_widths, np.int64)
    _count_windows(series_id, time, value, width_us, rows)
    most = int(rows.max()) if k_widths else 0
    if most == 0:
        return tuple(Aggregates.empty(w) for w in widths_s)
    shape = (k_widths, most)
    o_sid = np.empty(shape, np.int32)
    o_bucket = np.empty(shape, np.int64)
    o_count = np.empty(shape, np.int64)
    o_sum = np.empty(shape, np.float64)
    o_min = np.empty(shape, np.float64)
    o_max = np.empty(shape, np.float64)
    o_last = np.empty(shape, np.float64)
    o_last_time = np.empty(shape, np.int64)
    o_m2 = np.empty(shape, np.float64)
    o_start = np.empty(shape, np.int64)
    _fill_windows(
        series_id, time, value, width_us,
        o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time, o_m2, o_start,
    )
    # Row k of a C-ordered 2-D array is contiguous: the slices below are views, not copies.
    return tuple(
        Aggregates.build(w, o_sid[k, :m], o_bucket[k, :m], o_count[k, :m], o_sum[k, :m], o_min[k, :m],
                         o_max[k, :m], o_last[k, :m], o_last_time[k, :m], o_m2[k, :m])
        for k, (w, m) in enumerate(zip(widths_s, rows.tolist()))
    )


def aggregate_windows(series_id: np.ndarray, time: np.ndarray, value: np.ndarray, width_s: int) -> Aggregates:
    """Partial aggregates of one width for a batch already in (series, time) order."""
    return aggregate_widths(series_id, time, value, (width_s,))[0]
