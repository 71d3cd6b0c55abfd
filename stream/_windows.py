"""Tumbling-window partial aggregates of one batch.

Input is the batch in (series, time) order (``stream._order``). A window is
``[bucket, bucket + width)`` with ``bucket = floor(time / width) * width`` (aligned to the Unix
epoch, floor also before 1970). Each (series, window) run of finite values becomes one row;
non-finite values are skipped. Three linear passes, no per-reading Python:

1. count the rows, 2. fill count/sum/min/max/last and remember where each row starts,
3. m2 = Σ (x − mean)² per row, two-pass (more accurate than Welford's one-pass update).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from stream._constants import US_PER_S
from stream._results import Aggregates

__all__ = ["aggregate_windows"]


@njit(cache=True, nogil=True)
def _count_windows(series_id, time, value, width_us):  # pragma: no cover - compiled
    rows = 0
    prev_sid = -1
    bucket_end = 0  # exclusive end of the current row's window
    for j in range(series_id.size):
        if not np.isfinite(value[j]):
            continue
        t = time[j]
        # Time ascends within a series, so a reading before the current window's end is in it:
        # the integer division is only paid when a new window starts.
        if series_id[j] != prev_sid or t >= bucket_end:
            rows += 1
            prev_sid = series_id[j]
            bucket_end = (t // width_us) * width_us + width_us  # numba's // floors, like Python's
    return rows


@njit(cache=True, nogil=True)
def _fill_windows(
    series_id, time, value, width_us,
    o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time, o_m2, o_start,
):  # pragma: no cover - compiled
    """Rows of (series, window) runs; the batch must be in (series, time) order, stable."""
    n = series_id.size
    r = -1
    bucket_end = 0
    for j in range(n):
        x = value[j]
        if not np.isfinite(x):
            continue
        t = time[j]
        if r < 0 or series_id[j] != o_sid[r] or t >= bucket_end:
            r += 1
            bucket = (t // width_us) * width_us  # bucket = floor(t / width) · width
            bucket_end = bucket + width_us
            o_sid[r] = series_id[j]
            o_bucket[r] = bucket
            o_count[r] = 1
            o_sum[r] = x
            o_min[r] = x
            o_max[r] = x
            o_start[r] = j
        else:
            o_count[r] += 1
            o_sum[r] += x
            if x < o_min[r]:
                o_min[r] = x
            if x > o_max[r]:
                o_max[r] = x
        # In (series, time) order with a stable sort the run's last reading has the greatest
        # time, and among equal times the later one in input order.
        o_last[r] = x
        o_last_time[r] = t
    rows = r + 1
    # m2 = Σ_i (x_i − mean)²  with mean = sum / count, over the finite values of the run.
    for r in range(rows):
        end = o_start[r + 1] if r + 1 < rows else n
        mean = o_sum[r] / o_count[r]
        m2 = 0.0
        for j in range(o_start[r], end):
            x = value[j]
            if np.isfinite(x):
                d = x - mean
                m2 += d * d
        o_m2[r] = m2


def aggregate_windows(series_id: np.ndarray, time: np.ndarray, value: np.ndarray, width_s: int) -> Aggregates:
    """Partial aggregates of a batch already in (series, time) order (validated arrays)."""
    width_us = np.int64(width_s * US_PER_S)
    rows = _count_windows(series_id, time, value, width_us)
    if rows == 0:
        return Aggregates.empty(width_s)
    o_sid = np.empty(rows, np.int32)
    o_bucket = np.empty(rows, np.int64)
    o_count = np.empty(rows, np.int64)
    o_sum = np.empty(rows, np.float64)
    o_min = np.empty(rows, np.float64)
    o_max = np.empty(rows, np.float64)
    o_last = np.empty(rows, np.float64)
    o_last_time = np.empty(rows, np.int64)
    o_m2 = np.empty(rows, np.float64)
    o_start = np.empty(rows, np.int64)
    _fill_windows(
        series_id, time, value, width_us,
        o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time, o_m2, o_start,
    )
    return Aggregates.build(width_s, o_sid, o_bucket, o_count, o_sum, o_min, o_max, o_last, o_last_time, o_m2)
