"""The detector: kernel vs naive twin, independence of batch boundaries, and behaviour on known signals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_batches import BASE, batch, finite_values
from stream_naive import Detector

from stream import ANOMALY_KINDS, BatchError, DetectorParams, StreamProcessor
from stream._constants import KIND_NONE

SECOND = 1_000_000

params_strategy = st.builds(
    DetectorParams,
    alpha=st.sampled_from([0.05, 0.3, 1.0]),
    threshold=st.sampled_from([0.3, 0.5, 0.9, 1.0]),
    warmup=st.integers(0, 5),
    spike_z=st.sampled_from([1.0, 3.0, math.inf]),
    min_std=st.sampled_from([0.0, 1e-9, 0.5]),
    clip_z=st.sampled_from([1.0, 5.0, math.inf]),
    stuck_run=st.integers(0, 4),
    level_alpha=st.sampled_from([0.2, 1.0]),
    level_z=st.sampled_from([2.0, math.inf]),
    novelty_tol=st.sampled_from([0.005, 1.0, math.inf]),
    novelty_growth=st.sampled_from([0.1, 0.5]),
    gap_factor=st.sampled_from([2.0, math.inf]),
    gap_alpha=st.sampled_from([0.1, 1.0]),
    gap_warmup=st.integers(1, 3),
    suppress=st.sampled_from([0.0, 5.0]),
    ctx_bins=st.sampled_from([0, 2, 5, 16]),
    ctx_order=st.integers(1, 2),
    ctx_threshold=st.sampled_from([0.5, 1.0]),
    ctx_rest=st.sampled_from([0, 3]),
    ctx_memory=st.sampled_from([3, math.inf]),
    ctx_z=st.sampled_from([0.0, 0.5]),
    recent_halflife=st.sampled_from([2.0, 50.0, math.inf]),
    recent_tol=st.sampled_from([0.5, math.inf]),
)


def run_chunks(proc: StreamProcessor, sid, t, v, bounds: list[int]):
    """Process [bounds[k], bounds[k+1]) one after another; concatenate scores and anomalies."""
    scores, anomalies = [], []
    for lo, hi in zip(bounds, bounds[1:]):
        result = proc.process(sid[lo:hi], t[lo:hi], v[lo:hi])
        scores.append(result.scores)
        a = result.anomalies
        anomalies.append(np.rec.fromarrays([a.series_id, a.time, a.value, a.score, a.kind]))
    return np.concatenate(scores), np.concatenate(anomalies) if anomalies else None


@settings(max_examples=150, deadline=None)
@given(
    data=batch(max_size=80, max_series_id=5, values=st.one_of(finite_values, st.sampled_from([math.nan, math.inf]))),
    params=params_strategy,
    cuts=st.lists(st.integers(0, 80), max_size=4),
    bounded=st.booleans(),
)
def test_detector_matches_naive(data, params, cuts, bounded) -> None:
    sid, t, v = data
    proc, twin = StreamProcessor(params=params), Detector(params)
    if bounded:
        proc.set_bounds([1, 2], [-5e5, 0.0], [5e5, 1e6])
        twin.set_bounds(1, -5e5, 5e5)
        twin.set_bounds(2, 0.0, 1e6)
    bounds = [0, *sorted(c for c in cuts if c <= len(sid)), len(sid)]
    for lo, hi in zip(bounds, bounds[1:]):
        result = proc.process(sid[lo:hi], t[lo:hi], v[lo:hi])
        want_score, want_kind, want_flag = twin.process(sid[lo:hi], t[lo:hi], v[lo:hi])
        got = result.scores
        np.testing.assert_array_equal(np.isnan(got), ~np.isfinite(v[lo:hi]))
        np.testing.assert_allclose(got, want_score, rtol=1e-12, atol=1e-12)
        assert np.all((got[~np.isnan(got)] >= 0.0) & (got[~np.isnan(got)] <= 1.0))
        # A reading is flagged exactly when its score reaches the threshold.
        a = result.anomalies
        assert len(a) == np.count_nonzero(got >= params.threshold)
        assert np.all(a.kind != KIND_NONE) and np.all(a.score >= params.threshold)
        # Same readings flagged with the same kinds, except where a score sits on the threshold
        # within rounding (those readings are left out on both sides).
        unclear = {(int(sid[lo + i]), int(t[lo + i])) for i in
                   np.flatnonzero(np.abs(want_score - params.threshold) <= 1e-9)}
        order = np.lexsort((np.arange(hi - lo), t[lo:hi], sid[lo:hi]))
        want_rows = [(int(sid[lo + i]), int(t[lo + i]), int(want_kind[i])) for i in order if want_flag[i]]
        got_rows = list(zip(a.series_id.tolist(), a.time.tolist(), a.kind.tolist()))
        assert [r for r in got_rows if r[:2] not in unclear] == [r for r in want_rows if r[:2] not in unclear]


def sensor_signal(n_series: int, n: int, seed: int):
    """Readings of several series in time order: noise, spikes, a level shift, a stuck run, NaNs."""
    rng = np.random.default_rng(seed)
    sid = rng.integers(0, n_series, n).astype(np.int32)
    t = BASE + np.cumsum(rng.integers(0, 3 * SECOND, n)).astype(np.int64)  # equal times included
    v = 20.0 + rng.normal(0.0, 1.0, n)
    v[rng.integers(0, n, n // 50)] += rng.choice([-1.0, 1.0], n // 50) * rng.uniform(6, 40, n // 50)
    v[n // 2:] += 15.0 * (sid[n // 2:] == 1)  # level shift in series 1
    stuck = (sid == 2) & (np.arange(n) > n // 3) & (np.arange(n) < n // 3 + 200)
    v[stuck] = 21.0
    v[rng.integers(0, n, n // 100)] = np.nan
    v[rng.integers(0, n, 5)] = 500.0  # out of range for the bounded series
    return sid, t, v


@pytest.mark.parametrize("params", [
    DetectorParams(spike_z=4.55), DetectorParams(stuck_run=5, warmup=3, alpha=0.2, spike_z=4.0, level_z=4.0, gap_factor=3.0),
])
def test_batch_boundaries_do_not_change_anything(params) -> None:
    sid, t, v = sensor_signal(6, 3000, seed=1)
    outcomes = []
    for step in (1, 7, len(sid)):
        proc = StreamProcessor(params=params)
        proc.set_bounds([0, 1, 2, 3], [-50.0] * 4, [100.0] * 4)
        outcomes.append(run_chunks(proc, sid, t, v, list(range(0, len(sid), step)) + [len(sid)]))
    (s1, a1), (s7, a7), (sall, aall) = outcomes
    assert s1.view(np.uint64).tolist() == s7.view(np.uint64).tolist() == sall.view(np.uint64).tolist()
    # Anomalies come out per batch in (series, time) order; compare as multisets of identical bits.
    assert sorted(a.tobytes() for a in a1) == sorted(a.tobytes() for a in a7) == sorted(a.tobytes() for a in aall)
    kinds = {ANOMALY_KINDS[k] for k in aall["f4"].tolist()}
    assert {"spike", "out_of_range"} <= kinds
    assert ("stuck" in kinds) == (params.stuck_run > 0)


@settings(max_examples=40, deadline=None)
@given(
    sid=st.lists(st.integers(0, 3), min_size=1, max_size=60),
    v=st.lists(st.one_of(finite_values, st.just(math.nan)), min_size=60, max_size=60),
    gaps=st.lists(st.integers(0, 2), min_size=60, max_size=60),
    step=st.integers(1, 9),
)
def test_batch_boundaries_property(sid, v, gaps, step) -> None:
    n = len(sid)
    sid, v = np.array(sid, np.int32), np.array(v[:n])
    t = BASE + np.cumsum(gaps[:n]).astype(np.int64)
    params = DetectorParams(warmup=2, stuck_run=3, alpha=0.3, spike_z=3.0, level_z=3.0, gap_factor=2.0)
    whole, _ = run_chunks(StreamProcessor(params=params), sid, t, v, [0, n])
    parts, _ = run_chunks(StreamProcessor(params=params), sid, t, v, list(range(0, n, step)) + [n])
    assert whole.view(np.uint64).tolist() == parts.view(np.uint64).tolist()


def noisy(n: int, seed: int = 0) -> np.ndarray:
    return 20.0 + np.random.default_rng(seed).normal(0.0, 1.0, n)


def one_series(proc: StreamProcessor, v, start: int = 0):
    n = len(v)
    return proc.process(np.zeros(n, np.int32), BASE + (start + np.arange(n)) * SECOND, np.asarray(v, float))


# z-spikes alone, flagged at 0.5 (one criterion met), clipped at 5 std
Z_ONLY = dict(threshold=0.5, novelty_tol=math.inf, recent_tol=math.inf, suppress=0.0, ctx_bins=0, clip_z=5.0)
Z_SPIKES = DetectorParams(spike_z=4.55, **Z_ONLY)


def test_spike_is_flagged_only_after_warmup() -> None:
    v = noisy(200)
    v[10] += 30.0  # during warm-up: scored 0, not flagged
    v[150] += 12.0
    result = one_series(StreamProcessor(params=Z_SPIKES), v)
    assert result.scores[10] == 0.0
    assert result.anomalies.time.tolist() == [BASE + 150 * SECOND]
    assert result.anomalies.kind_names == ["spike"]
    assert result.scores[150] > 0.7 and np.median(result.scores[30:]) < 0.2


def test_level_shift_is_absorbed_quickly() -> None:
    v = noisy(400)
    v[200:] += 20.0
    result = one_series(StreamProcessor(params=Z_SPIKES), v)
    flagged = (result.anomalies.time - BASE) // SECOND
    assert flagged.min() == 200 and flagged.max() < 215  # a short burst, then the new level is normal


def test_clipping_keeps_a_wild_value_from_masking_the_next_spike() -> None:
    v = noisy(200)
    v[100] = 1e9
    v[110] += 10.0
    flagged = ((one_series(StreamProcessor(params=Z_SPIKES), v).anomalies.time - BASE) // SECOND).tolist()
    assert flagged == [100, 110]
    unclipped_params = DetectorParams(spike_z=4.55, **{**Z_ONLY, "clip_z": math.inf})
    unclipped = ((one_series(StreamProcessor(params=unclipped_params), v).anomalies.time - BASE)
                 // SECOND).tolist()
    assert unclipped == [100]


def test_out_of_range_is_flagged_and_not_learned() -> None:
    v = noisy(100)
    with_bad = v.copy()
    with_bad[50] = -300.0
    proc = StreamProcessor(params=Z_SPIKES)
    proc.set_bounds([0], [-40.0], [60.0])
    result = one_series(proc, with_bad)
    assert result.scores[50] == 1.0 and result.anomalies.kind_names == ["out_of_range"]
    clean = one_series(StreamProcessor(params=Z_SPIKES), np.delete(v, 50))
    np.testing.assert_array_equal(np.delete(result.scores, 50), clean.scores)


def test_late_readings_are_scored_but_not_learned() -> None:
    v = noisy(100)
    proc, reference = StreamProcessor(params=Z_SPIKES), StreamProcessor(params=Z_SPIKES)
    one_series(proc, v[:60])
    one_series(reference, v[:60])
    late = proc.process(np.array([0], np.int32), np.array([BASE - SECOND]), np.array([45.0]))
    assert late.scores[0] > 0.75 and late.anomalies.kind_names == ["spike"]
    np.testing.assert_array_equal(one_series(proc, v[60:], 60).scores, one_series(reference, v[60:], 60).scores)


def test_stuck_run() -> None:
    v = noisy(100)
    v[40:60] = 7.25
    result = one_series(StreamProcessor(params=DetectorParams(stuck_run=10, threshold=0.999999)), v)
    stuck = [int((t - BASE) // SECOND) for t, k in zip(result.anomalies.time, result.anomalies.kind_names)
             if k == "stuck"]
    assert stuck == list(range(49, 60))


def test_state_grows_for_large_series_ids() -> None:
    proc = StreamProcessor(params=Z_SPIKES)
    assert proc.n_series == 0
    one_series(proc, noisy(40))
    big = np.array([5, 70_000, 1_000_000], np.int32)
    proc.process(big, np.full(3, BASE), np.ones(3))
    assert proc.n_series == 1_000_001
    result = proc.process(np.zeros(2, np.int32), BASE + np.array([40, 41]) * SECOND, np.array([20.0, 60.0]))
    assert result.anomalies.kind_names == ["spike"]  # series 0 kept its state through the growth


def test_params_are_stored_as_given_and_validated() -> None:
    params = DetectorParams(alpha=0.1, threshold=0.95, warmup=10, spike_z=2.0)
    assert (params.alpha, params.threshold, params.warmup, params.spike_z) == (0.1, 0.95, 10, 2.0)
    for bad in ({"alpha": 0.0}, {"alpha": 1.5}, {"threshold": 0.0}, {"warmup": -1}, {"spike_z": math.nan},
                {"min_std": -1.0}, {"clip_z": 0.0}, {"stuck_run": 1.5}, {"level_alpha": 0.0}, {"level_z": 0.0},
                {"novelty_tol": 0.0}, {"novelty_growth": -1.0}, {"gap_factor": 1.0}, {"gap_alpha": 2.0},
                {"gap_warmup": 0}, {"suppress": -1.0}, {"suppress": math.inf}):
        with pytest.raises(ValueError):
            DetectorParams(**bad)


def test_pattern_flags_a_new_shape_inside_the_range_once() -> None:
    # a square wave (period 40) learned for 1000 readings, then a stretch that alternates at every
    # reading between its top and 8 (away from the mean): every value stays inside the range already seen,
    # only the sequence is new
    phase = np.arange(1200)
    v = np.where((phase // 20) % 2 == 0, 10.0, 0.0)
    v[1000:1100] = np.where(phase[1000:1100] % 2 == 0, 10.0, 8.0)
    result = one_series(StreamProcessor(), v)
    # the learned sequence: no pattern evidence; at most a suppressed echo of the recent range,
    # which forgets between the edges of the wave
    assert np.all(result.scores[100:1000] < 0.05)
    flagged = ((result.anomalies.time - BASE) // SECOND).tolist()
    late = [f for f in flagged if f >= 100]
    assert late and all(1000 <= f <= 1003 for f in late)  # reported as it starts (rest period), then quiet
    assert result.anomalies.kind_names[-1] == "pattern"


def test_pattern_is_off_for_sensor_quantities() -> None:
    from stream import QUANTITY_PARAMS

    assert all(p.ctx_bins == 0 for p in QUANTITY_PARAMS.values()) and DetectorParams().ctx_bins > 0


@pytest.mark.parametrize("warmup", [0, 1, 20])
def test_no_flag_of_a_learned_kind_during_the_warm_up(warmup) -> None:
    # spikes, repeats (stuck) and a gap inside the warm-up: silent; the same after it: flagged
    params = DetectorParams(warmup=warmup, stuck_run=3, gap_factor=2.0, gap_warmup=1, spike_z=2.0, threshold=0.5)
    v = np.array([1.0, 2.0, 1.0, 2.0, 50.0, 7.0, 7.0, 7.0, 1.0, 2.0] * 5)
    t = BASE + np.arange(v.size, dtype=np.int64) * SECOND
    t[6:] += 60 * SECOND  # a gap at reading 6
    t[26:] += 60 * SECOND  # and one at reading 26
    proc = StreamProcessor(params=params)
    proc.set_bounds([0], -100.0, 100.0)
    v[3] = 1e6  # out of range: flagged even during the warm-up (bounds are configured, not learned)
    result = proc.process(np.zeros(v.size, np.int32), t, v)
    index = {int(x): i for i, x in enumerate(t)}
    at = [index[int(x)] for x in result.anomalies.time]
    assert all(i >= warmup for i, kind in zip(at, result.anomalies.kind_names) if kind != "out_of_range")
    assert 3 in at and np.all(result.scores[1:warmup][np.arange(1, warmup) != 3] == 0.0)
    if warmup == 20:
        assert {"gap", "stuck", "spike"} <= set(k for i, k in zip(at, result.anomalies.kind_names) if i >= 20)
