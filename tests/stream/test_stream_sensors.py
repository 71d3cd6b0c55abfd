"""The per-quantity operating point on the demo's own signals (firmware_sim): plain sensor noise
raises no flag, a fault does, and nothing is flagged during a series' warm-up."""

from __future__ import annotations

import random

import numpy as np
import pytest

from firmware_sim.signals import KIND_QUANTITIES, make_model
from stream import QUANTITY_PARAMS, StreamProcessor, params_for
from stream._params import SENSOR_WARMUP

START_S = 1_764_580_000  # a Monday morning: rush hours, a daily cycle under way
PERIOD_S = {"node": 5.0}  # LoRa nodes report every 5 s, serial sensors every second


def demo_series(seconds: int, per_kind: int = 2) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(quantity, time µs, value) of every quantity of `per_kind` seeded sensors of each kind."""
    out = []
    for kind in KIND_QUANTITIES:
        for k in range(per_kind):
            model = make_model(kind, random.Random(f"{kind}-{k}"))
            t = START_S + np.arange(0.0, seconds, PERIOD_S.get(kind, 1.0))
            samples = [model.sample(float(ti)) for ti in t]
            for q in model.quantities:
                out.append((q, (t * 1e6).astype(np.int64), np.array([s[q] for s in samples])))
    return out


@pytest.fixture(scope="module")
def hour() -> list[tuple[str, np.ndarray, np.ndarray]]:
    return demo_series(3600)


def run_live(series, cadence_s: int = 10) -> list[tuple[str, str, float]]:
    """Feed all series together in 10 s batches in arrival order, as ingest does; the flags."""
    proc = StreamProcessor(widths_s=(60,))
    for i, (q, _, _) in enumerate(series):
        proc.set_params([i], params_for(q))
    sid = np.concatenate([np.full(t.size, i, np.int32) for i, (_, t, _) in enumerate(series)])
    t = np.concatenate([s[1] for s in series])
    v = np.concatenate([s[2] for s in series])
    order = np.argsort(t, kind="stable")
    sid, t, v = sid[order], t[order], v[order]
    edges = np.searchsorted(t, np.arange(t[0], t[-1] + cadence_s * 1_000_000, cadence_s * 1_000_000))
    flags = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        a = proc.process(sid[lo:hi], t[lo:hi], v[lo:hi]).anomalies
        flags += [(series[s][0], kind, float(x)) for s, kind, x in zip(a.series_id.tolist(), a.kind_names, a.value)]
    return flags


def test_every_demo_quantity_has_sensor_parameters(hour) -> None:
    assert {q for q, _, _ in hour} <= set(QUANTITY_PARAMS)


@pytest.mark.slow
def test_plain_sensor_noise_raises_no_flag(hour) -> None:
    # The issue's example: 31 "spikes" in the first 40 s over 102 series; now none in an hour.
    assert run_live(hour) == []


def test_the_issue_pm25_example_is_not_a_spike() -> None:
    rng = np.random.default_rng(3)
    v = np.round(13.0 + rng.uniform(-3.0, 3.0, 400), 1)  # wandering between 10 and 16
    v[-1] = 16.8
    t = START_S * 1_000_000 + np.arange(v.size, dtype=np.int64) * 1_000_000
    proc = StreamProcessor()
    proc.set_params([0], params_for("pm2_5"))
    result = proc.process(np.zeros(v.size, np.int32), t, v)
    assert len(result.anomalies) == 0 and result.scores[-1] < params_for("pm2_5").threshold


@pytest.mark.parametrize("quantity", ["pm2_5", "temperature", "noise", "power", "humidity"])
def test_a_fault_spike_is_flagged_after_the_warm_up(hour, quantity) -> None:
    _, t, v = next(s for s in hour if s[0] == quantity)
    v = v.copy()
    j = v.size * 3 // 4
    v[j] *= 10.0  # firmware_sim's spike fault
    proc = StreamProcessor()
    proc.set_params([0], params_for(quantity))
    a = proc.process(np.zeros(v.size, np.int32), t, v).anomalies
    assert a.time.tolist() == [t[j]] and a.kind_names == ["spike"]


def test_nothing_is_flagged_during_the_warm_up() -> None:
    # Wild values from the first reading on: every kind stays silent until the series has learned.
    v = np.tile([1.0, 500.0, -300.0, 1.0, 1.0], 100)
    t = START_S * 1_000_000 + np.arange(v.size, dtype=np.int64) * 1_000_000
    t[50:] += 3600 * 1_000_000  # and a gap
    proc = StreamProcessor()
    proc.set_params([0], params_for("pm2_5"))
    result = proc.process(np.zeros(v.size, np.int32), t, v)
    assert np.all(result.scores[:SENSOR_WARMUP] < params_for("pm2_5").threshold)
    assert np.all(result.anomalies.time >= t[SENSOR_WARMUP])
