"""Per-quantity hyper-parameters, the gap detector, check_gaps, novelty and suppression."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_batches import BASE, batch, finite_values
from stream_naive import Detector

from protocol.quantities import QUANTITIES
from stream import QUANTITY_PARAMS, BatchError, DetectorParams, StreamProcessor, params_for

SECOND = 1_000_000
NO_PATTERN = DetectorParams(ctx_bins=0)
GAPS = DetectorParams(ctx_bins=0, gap_factor=10.0, threshold=0.5)  # gaps are on per sensor quantity
OTHER = DetectorParams(spike_z=2.0, level_z=3.0, gap_factor=2.0, warmup=2, suppress=3.0, stuck_run=3)


def test_quantity_table_names_known_quantities() -> None:
    assert set(QUANTITY_PARAMS) <= set(QUANTITIES)
    assert params_for("no_such_quantity") == DetectorParams() == params_for(None)
    assert params_for("energy").novelty_tol == math.inf


@settings(max_examples=80, deadline=None)
@given(data=batch(max_size=80, max_series_id=5, values=st.one_of(finite_values, st.just(math.nan))),
       cuts=st.lists(st.integers(0, 80), max_size=3))
def test_per_series_params_match_naive(data, cuts) -> None:
    sid, t, v = data
    proc, twin = StreamProcessor(), Detector()
    proc.set_params([1, 3], OTHER)
    twin.set_params(1, OTHER)
    twin.set_params(3, OTHER)
    assert proc.params_of(1) == OTHER and proc.params_of(0) == DetectorParams()
    bounds = [0, *sorted(c for c in cuts if c <= len(sid)), len(sid)]
    for lo, hi in zip(bounds, bounds[1:]):
        got = proc.process(sid[lo:hi], t[lo:hi], v[lo:hi]).scores
        want, _, _ = twin.process(sid[lo:hi], t[lo:hi], v[lo:hi])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def regular(n: int, step_s: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(n, np.int32), BASE + np.arange(n) * step_s * SECOND, 20.0 + np.sin(np.arange(n) / 5.0)


def test_gap_is_flagged_when_a_reading_arrives_late() -> None:
    sid, t, v = regular(60)
    t[40:] += 20 * 60 * SECOND  # 20 missing minutes at a 1-minute cadence
    result = StreamProcessor(params=GAPS).process(sid, t, v)
    assert result.anomalies.kind_names == ["gap"]
    assert int(result.anomalies.time[0]) == int(t[40])
    assert result.scores[40] > 0.5 and np.all(result.scores[41:] < 0.5)


def test_gaps_are_on_for_sensor_quantities_only() -> None:
    assert DetectorParams().gap_factor == math.inf  # NAB's files have irregular clocks, not dead sensors
    assert all(p.gap_factor == 10.0 for p in QUANTITY_PARAMS.values())


def test_check_gaps() -> None:
    proc = StreamProcessor(params=GAPS)
    sid, t, v = regular(30)
    proc.process(sid, t, v)
    proc.process([5], [BASE], [1.0])  # one reading: no expected interval yet
    last = int(t[-1])
    assert proc.check_gaps(last + 5 * 60 * SECOND)[0].tolist() == []
    ids, overdue = proc.check_gaps(last + 11 * 60 * SECOND)
    assert ids.tolist() == [0] and overdue.tolist() == [60 * SECOND]
    ids, overdue = proc.check_gaps(last + 4 * 60 * SECOND, factor=3)  # an alert rule's own number of intervals
    assert ids.tolist() == [0] and overdue.tolist() == [60 * SECOND]


def test_novelty_flags_a_new_extreme_once() -> None:
    sid, t, v = regular(300)
    v[200:] += 5.0  # a new level far above anything seen
    result = StreamProcessor(params=NO_PATTERN).process(sid, t, v)
    flagged = ((result.anomalies.time - BASE) // (60 * SECOND)).tolist()
    assert flagged[0] == 200 and len(flagged) <= 3  # suppression: reported once, not every reading
    assert set(result.anomalies.kind_names) == {"spike"}


def test_level_shift_kind() -> None:
    rng = np.random.default_rng(3)
    sid, t, _ = regular(400)
    v = 20.0 + rng.normal(0.0, 1.0, 400)
    v[250:] += 3.5  # mostly inside the range seen (novelty is off here): the fast mean tells
    params = DetectorParams(level_z=3.0, novelty_tol=math.inf, recent_tol=math.inf, ctx_bins=0, threshold=0.5)
    result = StreamProcessor(params=params).process(sid, t, v)
    flagged = ((result.anomalies.time - BASE) // (60 * SECOND)).tolist()
    assert "level_shift" in result.anomalies.kind_names and 250 <= flagged[0] < 262


def test_set_params_validation() -> None:
    proc = StreamProcessor()
    with pytest.raises(BatchError):
        proc.set_params([0], {"alpha": 0.1})  # type: ignore[arg-type]
    with pytest.raises(BatchError):
        proc.set_params([-1], OTHER)
    proc.set_params([], OTHER)
    proc.set_params([7], OTHER)
    proc.set_params([8], OTHER)
    assert len(proc._param_sets) == 2 and proc.n_series == 9
