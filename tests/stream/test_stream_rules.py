"""Threshold rules: one open and one clear per episode, hysteresis, hold time, batch-independent,
matching the one-reading-at-a-time twin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_batches import batch
from stream_naive import NaiveRule, time_order

from stream import BatchError, StreamProcessor, ThresholdRules
from stream._order import Scratch, sort_runs

MINUTE = 60 * 1_000_000
BASE = 1_764_580_000 * 1_000_000

rule_specs = st.lists(
    st.tuples(st.integers(0, 5), st.sampled_from([-1.0, 0.0, 20.5, 1e5]), st.sampled_from([0.0, 1.0, 100.0]),
              st.sampled_from([0, 1, 60, 3600]), st.booleans()),
    min_size=1, max_size=6,
)


def add_rules(proc: StreamProcessor, specs) -> list[NaiveRule]:
    twins = []
    for k, (sid, on, band, hold_s, above) in enumerate(specs):
        off = on - band if above else on + band
        proc.rules.add(k, sid, on=on, off=off, hold_s=hold_s, above=above)
        twins.append(NaiveRule(k, sid, on, off, hold_s * 1_000_000, above))
    return twins


def events_of(result) -> list[tuple[int, int, bool]]:
    e = result.rule_events
    return list(zip(e.rule_id.tolist(), e.time.tolist(), e.opened.tolist()))


@settings(max_examples=150, deadline=None)
@given(data=batch(max_size=80, max_series_id=5), specs=rule_specs, cuts=st.lists(st.integers(0, 80), max_size=3))
def test_rules_match_naive_in_any_cut(data, specs, cuts) -> None:
    sid, t, v = data
    proc = StreamProcessor()
    twins = add_rules(proc, specs)
    bounds = [0, *sorted(c for c in cuts if c <= len(sid)), len(sid)]
    got, want = [], []
    for lo, hi in zip(bounds, bounds[1:]):
        got += events_of(proc.process(sid[lo:hi], t[lo:hi], v[lo:hi]))
        part = (sid[lo:hi], t[lo:hi], v[lo:hi])
        for i in time_order(part[0], part[1]):
            for rule in twins:
                if rule.series_id == int(part[0][i]):
                    opened = rule.one(int(part[1][i]), float(part[2][i]))
                    if opened is not None:
                        want.append((rule.rule_id, int(part[1][i]), opened))
    assert sorted(got) == sorted(want)
    assert sorted(proc.rules.active().tolist()) == sorted(r.rule_id for r in twins if r.active)


def pm25(values: list[float], step_min: int = 1):
    n = len(values)
    return np.full(n, 3, np.int32), BASE + np.arange(n, dtype=np.int64) * step_min * MINUTE, np.array(values, float)


def test_pm25_above_25_for_15_minutes_is_one_episode() -> None:
    # 10 min clean, 8 min above 25, a dip to 24, 20 min above 25, back to 18.
    values = [12.0] * 10 + [30.0] * 8 + [24.0] + [31.0] * 20 + [18.0] * 5
    proc = StreamProcessor()
    proc.rules.add(7, 3, on=25.0, off=20.0, hold_s=15 * 60)
    sid, t, v = pm25(values)
    events = proc.process(sid, t, v).rule_events
    # the streak restarts after the dip (24 is not above 25): opens 15 minutes into the second one
    assert events.rule_id.tolist() == [7, 7] and events.opened.tolist() == [True, False]
    assert ((events.time - BASE) // MINUTE).tolist() == [19 + 15, 39]
    assert events.value.tolist() == [31.0, 18.0]
    assert proc.rules.active().tolist() == []


def test_hysteresis_keeps_a_hovering_value_in_one_episode() -> None:
    values = [26.0, 24.0, 26.0, 21.0, 26.0, 19.0, 26.0]  # above on, then hovering above off
    proc = StreamProcessor()
    proc.rules.add(1, 3, on=25.0, off=20.0)
    events = proc.process(*pm25(values)).rule_events
    assert list(zip(((events.time - BASE) // MINUTE).tolist(), events.opened.tolist())) == [
        (0, True), (5, False), (6, True)]
    assert proc.rules.active().tolist() == [1]


def test_below_rules_late_readings_and_removal() -> None:
    proc = StreamProcessor()
    proc.rules.add(2, 3, on=10.0, off=12.0, above=False)  # a battery below 10 until back above 12
    sid, t, v = pm25([15.0, 9.0, 11.0, 13.0])
    assert events_of(proc.process(sid, t, v)) == [(2, int(t[1]), True), (2, int(t[3]), False)]
    late = proc.process([3], [t[1]], [1.0])  # older than what the rule has seen: ignored
    assert len(late.rule_events) == 0
    proc.rules.remove([2])
    assert len(proc.rules) == 0 and len(proc.process([3], [t[3] + MINUTE], [1.0]).rule_events) == 0


@pytest.mark.parametrize("kwargs", [
    dict(on=25.0, off=30.0), dict(on=10.0, off=5.0, above=False), dict(on=float("nan")),
    dict(on=1.0, hold_s=-1.0), dict(on="25"),
])
def test_rule_validation(kwargs) -> None:
    with pytest.raises(BatchError):
        StreamProcessor().rules.add(1, 0, **kwargs)
    with pytest.raises(BatchError):
        StreamProcessor().rules.add(1, -1, on=1.0)


def test_many_rules_at_once() -> None:
    proc = StreamProcessor()
    proc.rules.add(np.arange(100, 103), [0, 1, 2], on=[1.0, 2.0, 3.0], off=0.0, hold_s=0)
    result = proc.process([0, 1, 2, 2], BASE + np.arange(4) * MINUTE, [1.5, 1.5, 4.0, -1.0])
    assert events_of(result) == [(100, BASE, True), (102, BASE + 2 * MINUTE, True), (102, BASE + 3 * MINUTE, False)]
    proc.rules.add(100, 0, on=5.0)  # replaced: its episode restarts
    assert len(proc.rules) == 3 and proc.rules.active().tolist() == []


def test_rules_on_their_own_equal_rules_in_the_walk() -> None:
    """``ThresholdRules.evaluate`` on a sorted batch gives the events the processor's walk gives."""
    rng = np.random.default_rng(5)
    sid = rng.integers(0, 30, 5000).astype(np.int32)
    t = BASE + np.sort(rng.integers(0, 3600, 5000)) * 1_000_000
    v = rng.normal(10.0, 3.0, 5000)
    proc = StreamProcessor()
    alone = ThresholdRules()
    for rules in (proc.rules, alone):
        rules.add(np.arange(30), np.arange(30), on=13.0, off=11.0, hold_s=60)
        rules.add(np.arange(30, 60), np.arange(30), on=6.0, off=8.0, hold_s=0, above=False)
    walked = proc.process(sid, t, v).rule_events
    own = alone.evaluate(sort_runs(sid, t, v, Scratch()))
    assert len(walked) > 0
    for f in ("rule_id", "time", "value", "opened"):
        np.testing.assert_array_equal(getattr(walked, f), getattr(own, f))
    assert alone.active().tolist() == proc.rules.active().tolist()


def test_a_batch_without_rules_leaves_their_episodes_alone() -> None:
    proc = StreamProcessor(widths_s=(60,))
    proc.rules.add(7, 0, on=30.0, off=20.0)
    t = np.arange(4, dtype=np.int64) * 1_000_000
    replay = proc.process(np.zeros(4, np.int32), t, np.array([10.0, 40.0, 41.0, 42.0]), rules=False)
    assert len(replay.rule_events) == 0 and proc.rules.active().tolist() == []
    assert proc.n_series == 1 and len(replay.aggregates[0]) == 1   # the detector and windows still ran
    live = proc.process(np.zeros(1, np.int32), t[-1:] + 1_000_000, np.array([43.0]))
    assert live.rule_events.rule_id.tolist() == [7] and live.rule_events.opened.tolist() == [True]


def test_a_resumed_episode_clears_and_does_not_open_again() -> None:
    proc = StreamProcessor(widths_s=(60,))
    proc.rules.add([1, 2], [0, 0], on=30.0, off=20.0)
    proc.rules.resume([2, 99])   # 99: unknown, ignored
    assert proc.rules.active().tolist() == [2]
    t = np.arange(3, dtype=np.int64) * 1_000_000
    events = proc.process(np.zeros(3, np.int32), t, np.array([40.0, 41.0, 10.0])).rule_events
    assert list(zip(events.rule_id.tolist(), events.opened.tolist())) == [(1, True), (1, False), (2, False)]
