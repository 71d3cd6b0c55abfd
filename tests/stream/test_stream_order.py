"""The batch sort: stable (series, time) order, dense counting sort and sparse fallback alike."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from stream_batches import batch, times

from stream import StreamProcessor
from stream._order import Scratch, sort_batch, sort_runs


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


@settings(max_examples=100, deadline=None)
@given(data=batch(max_size=100, max_series_id=50))
def test_a_batch_already_in_order_is_taken_as_it_is(data) -> None:
    """No sort and no copy: the identity order, the caller's own arrays, one run per series."""
    sid, t, v = (a[np.lexsort((data[1], data[0]))] for a in data)
    assume(sid.size > 0)
    assert_sorted_like_lexsort(sid, t, v)
    s = sort_runs(sid, t, v, Scratch())
    np.testing.assert_array_equal(s.order, np.arange(sid.size))
    assert s.time is t and s.value is v
    np.testing.assert_array_equal(np.repeat(s.run_sid, np.diff(s.run_bounds)), sid)
    assert (np.diff(s.run_sid) > 0).all()


def test_processing_an_ordered_batch_equals_processing_it_shuffled() -> None:
    """The fast path for ordered batches and the counting sort give the same results, rules
    (evaluated in the detector's walk) included."""
    rng = np.random.default_rng(11)
    n = 20_000
    sid = np.sort(rng.integers(0, 40, n)).astype(np.int32)
    t = np.concatenate([np.sort(rng.integers(0, 10**10, c)) for c in np.bincount(sid, minlength=40)])
    v = rng.normal(20.0, 3.0, n)
    v[rng.random(n) < 0.01] = np.nan
    shuffle = rng.permutation(n)
    results = []
    for order in (np.arange(n), shuffle):
        proc = StreamProcessor(widths_s=(60, 3600))
        proc.rules.add(np.arange(40), np.arange(40), on=24.0, off=21.0, hold_s=30)
        results.append((proc.process(sid[order], t[order], v[order]), order))
    (a, _), (b, order) = results
    np.testing.assert_array_equal(a.scores[order], b.scores)
    for x, y in zip(a.aggregates, b.aggregates):
        for f in ("series_id", "bucket", "count", "sum", "min", "max", "last", "last_time", "m2"):
            np.testing.assert_array_equal(getattr(x, f), getattr(y, f))
    for f in ("series_id", "time", "value", "score", "kind"):
        np.testing.assert_array_equal(getattr(a.anomalies, f), getattr(b.anomalies, f))
    assert len(a.rule_events) > 0
    for f in ("rule_id", "time", "value", "opened"):
        np.testing.assert_array_equal(getattr(a.rule_events, f), getattr(b.rule_events, f))
