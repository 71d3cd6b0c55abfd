"""A restarted ingest worker rebuilds its series' stream state from the stored readings: a
sensor that died before the restart raises its silence alarm without speaking again, the
detector flags at once what it flagged before the restart (no second warm-up, no false gap),
and the replay stores nothing twice (real pipelines on a real PostgreSQL)."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

import ingest.pipeline as pipeline_module
from ingest import Message, Pipeline
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import up_topic
from storage.alarm_rules import RuleScope
from storage.alarms import AlarmFilter, create_rule, list_alarms
from storage.registry import register_device
from stream import params_for

BASE_T = 1_790_000_000.0
MINUTE_US = 60_000_000
PER_PACK = 100


def _messages(org: str, first_seq: int, values, start: float, device: str = "air-1") -> list[Message]:
    """Packs of `values`, one reading a minute from `start`."""
    out = []
    for k, lo in enumerate(range(0, len(values), PER_PACK)):
        records = tuple(Record(name=f"{device}/pm2_5", value=float(v), time=start + 60.0 * (lo + i), unit="ug/m3")
                        for i, v in enumerate(values[lo:lo + PER_PACK]))
        out.append(Message(topic=up_topic(org, "gw-1"), mid=first_seq + k + 1, qos=1, content_type=None,
                           payload=encode_pack(Pack(boot_id="boot-a", seq=first_seq + k, records=records)),
                           received_us=int(BASE_T * 1e6)))
    return out


@pytest.fixture
def devices(database: str, org: str) -> None:
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="gw-1", kind="gateway")
        register_device(conn, org=org, device="air-1", gateway="gw-1", kind="serial")
        register_device(conn, org=org, device="air-2", gateway="gw-1", kind="serial")


def _before_restart(database: str, org: str, values, devices: tuple[str, ...] = ("air-1",)) -> None:
    first = Pipeline(database)
    try:
        for k, device in enumerate(devices):
            for message in _messages(org, 100 * k, values, BASE_T, device):
                first.commit([message])
    finally:
        first.close()


def _noise(n: int) -> np.ndarray:
    return 12.0 + np.random.default_rng(3).normal(0.0, 0.5, n)


def test_sensors_dead_since_before_a_restart_raise_their_silence_alarms(devices, database, org,
                                                                        monkeypatch) -> None:
    monkeypatch.setattr(pipeline_module, "PRIME_SERIES_PER_READ", 1)   # one statement per series
    _before_restart(database, org, _noise(20), devices=("air-1", "air-2"))
    with psycopg.connect(database) as conn:
        create_rule(conn, org=org, name="pm-silent", kind="silence", scope=RuleScope(quantity="pm2_5"), intervals=3)
    restarted = Pipeline(database)
    try:
        last_us = int((BASE_T + 19 * 60) * 1e6)
        restarted.check_alarms(last_us + 2 * MINUTE_US)
        with psycopg.connect(database) as conn:
            assert list_alarms(conn, org=org, where=AlarmFilter()) == []
        restarted.check_alarms(last_us + 4 * MINUTE_US)
    finally:
        restarted.close()
    with psycopg.connect(database) as conn:
        alarms = list_alarms(conn, org=org, where=AlarmFilter())
    assert sorted((a.kind, a.state, a.device) for a in alarms) == [("silence", "open", "air-1"),
                                                                   ("silence", "open", "air-2")]
    # three intervals after each one's last reading
    assert {a.opened_at.timestamp() for a in alarms} == {BASE_T + 19 * 60 + 3 * 60}


def test_the_detector_goes_on_where_it_was_and_nothing_is_stored_twice(devices, database, org) -> None:
    params = params_for("pm2_5")
    n = params.warmup + 20
    values = _noise(n)
    _before_restart(database, org, values)
    restarted = Pipeline(database)
    try:
        t = BASE_T + 60.0 * n
        result = restarted.commit(_messages(org, 1000, [values[-1], 40.0, values[-2]], t))
    finally:
        restarted.close()
    assert result.readings_stored == 3
    with psycopg.connect(database) as conn:
        flagged = conn.execute("SELECT extract(epoch FROM time), value, kind FROM anomalies ORDER BY time").fetchall()
        count, total = conn.execute("SELECT sum(count), sum(sum) FROM aggregates WHERE width_s = 60").fetchone()
    # the spike, scored against the state learned before the restart; no gap, no warm-up
    assert [(float(ts), v) for ts, v, _ in flagged] == [(t + 60.0, 40.0)]
    assert flagged[0][2] in ("spike", "level_shift")
    # the replayed readings were aggregated once, when they were first committed
    assert count == n + 3 and total == pytest.approx(values.sum() + values[-1] + 40.0 + values[-2])


def test_a_threshold_alarm_open_before_a_restart_clears_at_the_next_reading_below(devices, database, org) -> None:
    with psycopg.connect(database) as conn:
        create_rule(conn, org=org, name="pm-high", scope=RuleScope(quantity="pm2_5"), on=25.0, off=20.0)
    _before_restart(database, org, [12.0, 13.0, 30.0, 31.0])
    with psycopg.connect(database) as conn:
        (alarm,) = list_alarms(conn, org=org, where=AlarmFilter())
    assert (alarm.state, alarm.open_value) == ("open", 30.0)
    restarted = Pipeline(database)
    try:
        restarted.commit(_messages(org, 1000, [32.0, 15.0], BASE_T + 240))   # still above, then back below
    finally:
        restarted.close()
    with psycopg.connect(database) as conn:
        (alarm,) = list_alarms(conn, org=org, where=AlarmFilter())
    assert (alarm.state, alarm.clear_value, alarm.cleared_at.timestamp()) == ("cleared", 15.0, BASE_T + 300)
    assert alarm.hits == 3   # 30 and 31 before the restart, 32 after it
