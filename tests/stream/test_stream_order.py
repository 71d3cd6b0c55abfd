"""The batch sort: stable (series, time) order, dense counting sort and sparse fallback alike."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_batches import batch, times

from stream._order import sort_batch


def assert_sorted_like_lexsort(sid, t, v) -> None:
    want = np.lexsort((t, sid))
    order, sid_s, t_s, v_s = sort_batch(sid, t, v)
    assert order.dtype == np.int64 and sid_s.dtype == np.int32 and t_s.dtype == np.int64 and v_s.dtype == np.float64
    np.testing.assert_array_equal(order, want)
    np.testing.assert_array_equal(sid_s, sid[want])
    np.testing.assert_array_equal(t_s, t[want])
    np.testing.assert_array_equal(v_s.view(np.uint64), v[want].view(np.uint64))


@settings(max_examples=150, deadline=None)
@given(data=batch(max_size=100, max_series_id=200_000))
def test_order_is_a_stable_lexsort(data) -> None:
    sid, t, v = data
    assert_sorted_like_lexsort(sid, t, v)


@settings(max_examples=30, deadline=None)
@given(t=st.lists(times, min_size=1, max_size=20), n=st.integers(50, 3000), seed=st.integers(0, 2**32 - 1))
def test_long_unsorted_runs_use_a_stable_sort(t, n, seed) -> None:
    """Runs far longer than any insertion-sort cut-off, full of equal times."""
    rng = np.random.default_rng(seed)
    t = np.array(t, np.int64)[rng.integers(0, len(t), n)]
    sid = rng.integers(0, 3, n).astype(np.int32)
    assert_sorted_like_lexsort(sid, t, rng.normal(size=n))
