"""Windowed partial aggregates: kernel vs naive twin, edge cases, and merging of partials."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_batches import BASE, MINUTE, batch, finite_values
from stream_naive import aggregate, merge, rows_of

from stream import Aggregates, StreamProcessor

WIDTHS = st.sampled_from([1, 60, 3600, 7 * 86_400])


def aggregates_of(sid, t, v, width_s: int) -> Aggregates:
    return StreamProcessor(widths_s=(width_s,)).process(sid, t, v).aggregates[0]


def assert_rows_close(got: dict, want: dict, *, rtol: float = 1e-9, atol: float = 0.0) -> None:
    assert got.keys() == want.keys()
    for key, w in want.items():
        g = got[key]
        for name in ("count", "min", "max", "last", "last_time"):
            assert g[name] == w[name], (key, name, g[name], w[name])
        scale = max(abs(w["min"]), abs(w["max"]))
        assert abs(g["sum"] - w["sum"]) <= rtol * abs(w["sum"]) + 1e-12 * w["count"] * scale + atol, (key, g, w)
        assert abs(g["m2"] - w["m2"]) <= rtol * abs(w["m2"]) + 1e-12 * w["count"] * scale**2 + atol, (key, g, w)
        assert g["m2"] >= 0.0


def assert_well_formed(agg: Aggregates) -> None:
    assert agg.series_id.dtype == np.int32 and agg.m2.dtype == np.float64
    for name in ("bucket", "count", "last_time"):
        assert getattr(agg, name).dtype == np.int64
    for name in ("sum", "min", "max", "last", "m2"):
        assert getattr(agg, name).dtype == np.float64
        assert len(getattr(agg, name)) == len(agg)
    keys = list(zip(agg.series_id.tolist(), agg.bucket.tolist()))
    assert keys == sorted(set(keys)), "rows must be unique and sorted by (series_id, bucket)"
    assert np.all(agg.bucket % (agg.width_s * 1_000_000) == 0)
    assert np.all((agg.bucket <= agg.last_time) & (agg.last_time < agg.bucket + agg.width_s * 1_000_000))
    assert np.all(agg.count >= 1)


@settings(max_examples=150, deadline=None)
@given(data=batch(max_series_id=70_000), widths=st.lists(WIDTHS, min_size=1, max_size=2, unique=True))
def test_aggregates_match_naive(data, widths) -> None:
    sid, t, v = data
    result = StreamProcessor(widths_s=widths).process(sid, t, v)
    assert [a.width_s for a in result.aggregates] == widths
    for agg, width in zip(result.aggregates, widths):
        assert_well_formed(agg)
        assert_rows_close(rows_of(agg), aggregate(sid, t, v, width))


@settings(max_examples=100, deadline=None)
@given(data=batch(max_size=80), width=WIDTHS, cuts=st.lists(st.integers(0, 80), max_size=6))
def test_merged_partials_equal_the_whole(data, width, cuts) -> None:
    """Any contiguous split of a batch, merged as storage merges, gives the whole batch's rows."""
    sid, t, v = data
    whole = rows_of(aggregates_of(sid, t, v, width))
    bounds = [0, *sorted(c for c in cuts if c <= len(sid)), len(sid)]
    merged: dict = {}
    for lo, hi in zip(bounds, bounds[1:]):
        for key, row in rows_of(aggregates_of(sid[lo:hi], t[lo:hi], v[lo:hi], width)).items():
            merged[key] = merge(merged[key], row) if key in merged else row
    # atol: a merged m2 of tiny values can land on a subnormal (~4e-315) where the whole's is 0
    # and scale² underflows, so no relative tolerance can hold.
    assert_rows_close(merged, whole, atol=1e-300)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(finite_values, min_size=1, max_size=300), cut=st.integers(0, 300))
def test_chan_merge_of_one_window(values, cut) -> None:
    """Long single-window runs: the Chan merge stays within 1e-9 of the one-shot m2."""
    n = len(values)
    sid, t, v = np.zeros(n, np.int32), np.full(n, BASE, np.int64) + np.arange(n), np.array(values)
    cut = min(cut, n)
    whole = rows_of(aggregates_of(sid, t, v, 3600))
    parts = [rows_of(aggregates_of(sid[a:b], t[a:b], v[a:b], 3600)) for a, b in ((0, cut), (cut, n)) if b > a]
    merged = parts[0] if len(parts) == 1 else {k: merge(parts[0][k], parts[1][k]) for k in whole}
    assert_rows_close(merged, whole)


def test_window_alignment_and_floor_before_1970() -> None:
    t = np.array([-MINUTE - 1, -MINUTE, -1, 0, MINUTE - 1, MINUTE], np.int64)
    agg = aggregates_of(np.zeros(6, np.int32), t, np.arange(6.0), 60)
    assert agg.bucket.tolist() == [-2 * MINUTE, -MINUTE, 0, MINUTE]
    assert agg.count.tolist() == [1, 2, 2, 1]
    assert agg.last.tolist() == [0.0, 2.0, 4.0, 5.0]


def test_last_is_greatest_time_then_later_input() -> None:
    sid = np.zeros(4, np.int32)
    t = np.array([BASE + 5, BASE + 9, BASE + 9, BASE + 1], np.int64)
    agg = aggregates_of(sid, t, np.array([1.0, 2.0, 3.0, 4.0]), 60)
    assert (agg.last.tolist(), agg.last_time.tolist()) == ([3.0], [BASE + 9])


def test_non_finite_values_are_left_out() -> None:
    sid = np.array([0, 0, 0, 1, 1], np.int32)
    t = np.array([BASE, BASE + 1, BASE + 2, BASE, BASE + 1], np.int64)
    v = np.array([1.0, np.nan, 3.0, np.inf, -np.inf])
    agg = aggregates_of(sid, t, v, 60)
    assert agg.series_id.tolist() == [0]  # series 1's window held no finite value: no row
    assert (agg.count[0], agg.sum[0], agg.last[0], agg.last_time[0], agg.m2[0]) == (2, 4.0, 3.0, BASE + 2, 2.0)


def test_one_reading_and_empty_batch() -> None:
    agg = aggregates_of(np.array([3], np.int32), np.array([BASE + 7]), np.array([2.5]), 60)
    assert (len(agg), agg.count[0], agg.min[0], agg.max[0], agg.m2[0]) == (1, 1, 2.5, 2.5, 0.0)
    empty = aggregates_of(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0), 60)
    assert len(empty) == 0 and empty.width_s == 60
    assert_well_formed(empty)


def test_extreme_magnitudes_do_not_break_order_statistics() -> None:
    v = np.array([1e300, -1e300, 5e-324, 1e300])
    agg = aggregates_of(np.zeros(4, np.int32), BASE + np.arange(4), v, 60)
    assert (agg.count[0], agg.min[0], agg.max[0], agg.last[0]) == (4, -1e300, 1e300, 1e300)
    assert math.isfinite(agg.sum[0])


def test_results_are_read_only() -> None:
    agg = aggregates_of(np.zeros(2, np.int32), BASE + np.arange(2), np.ones(2), 60)
    assert not agg.sum.flags.writeable
