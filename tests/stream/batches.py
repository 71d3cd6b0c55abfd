"""Hypothesis strategies for columnar batches, nasty on purpose.

Times mix window boundaries, equal timestamps, negative times (before 1970), gaps of years and
the extremes of the accepted range; values mix ordinary floats with NaN, ±inf and signed zeros.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from stream._constants import TIME_LIMIT_US, US_PER_S

MINUTE = 60 * US_PER_S
YEAR = 365 * 86_400 * US_PER_S
BASE = 1_700_000_000 * US_PER_S  # Nov 2023

times = st.one_of(
    st.integers(BASE - 3 * MINUTE, BASE + 3 * MINUTE),  # a few windows, often equal
    st.sampled_from([BASE, BASE - 1, BASE + MINUTE, BASE + MINUTE - 1, 0, -1, -MINUTE, -MINUTE - 1]),
    st.integers(-3 * MINUTE, 3 * MINUTE),  # around the epoch, negative included
    st.integers(-50, 50).map(lambda k: BASE + k * YEAR),  # gaps of years
    st.integers(-TIME_LIMIT_US + 1, TIME_LIMIT_US - 1),  # anywhere
)

finite_values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 20.5]),
)
values = st.one_of(finite_values, st.sampled_from([math.nan, math.inf, -math.inf]))


@st.composite
def batch(draw, *, max_size: int = 60, max_series_id: int = 20, values=values):
    """(series_id int32, time int64, value float64) arrays of equal length, 0..max_size."""
    pool = draw(st.lists(st.integers(0, max_series_id), min_size=1, max_size=5, unique=True))
    n = draw(st.integers(0, max_size))  # uniform sizes: long batches as often as short ones
    rows = draw(st.lists(st.tuples(st.sampled_from(pool), times, values), min_size=n, max_size=n))
    sid = np.array([r[0] for r in rows], np.int32)
    t = np.array([r[1] for r in rows], np.int64)
    v = np.array([r[2] for r in rows], np.float64)
    return sid, t, v


series_ids = st.one_of(st.integers(0, 20), st.integers(0, 70_000))
