"""Anomaly, silence and device-status rules through the ingest pipeline and a real PostgreSQL:
flags of the rule's kinds open one alarm per series and count into it, quiet clears it; the
timer (check_gaps) finds a dead sensor without a late reading and its next reading clears the
silence; a gateway offline or with a growing buffer opens an alarm that clears by itself."""

from __future__ import annotations

import time

import psycopg
import pytest

from ingest import Message, Pipeline
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import up_topic
from storage.alarm_rules import RuleScope
from storage.alarms import AlarmFilter, create_rule, list_alarms
from storage.console import record_gateway_status
from storage.registry import register_device

BASE_T = 1_790_000_000.0
MINUTE_US = 60_000_000


def _message(org: str, seq: int, values: list[float], start: float, name: str = "air-1/pm2_5") -> Message:
    records = tuple(Record(name=name, value=v, time=start + 60.0 * i, unit="ug/m3") for i, v in enumerate(values))
    return Message(topic=up_topic(org, "gw-1"), payload=encode_pack(Pack(boot_id="boot-a", seq=seq, records=records)),
                   mid=seq + 1, qos=1, content_type=None, received_us=int(BASE_T * 1e6))


@pytest.fixture
def pipeline(database: str, org: str):
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="gw-1", kind="gateway")
        register_device(conn, org=org, device="air-1", gateway="gw-1", kind="serial")
        register_device(conn, org=org, device="air-2", gateway="gw-1", kind="serial")
    pipe = Pipeline(database)
    yield pipe
    pipe.close()


def _alarms(database: str, org: str, **where) -> list:
    with psycopg.connect(database) as conn:
        return list_alarms(conn, org=org, where=AlarmFilter(**where))


def test_anomaly_rule_opens_one_alarm_per_series_and_quiet_clears_it(pipeline, database, org) -> None:
    with psycopg.connect(database) as conn:  # scoped to a quantity before any of its series exists
        create_rule(conn, org=org, name="pm-faults", kind="anomaly", scope=RuleScope(quantity="pm2_5"),
                    anomaly_kinds=["out_of_range"], min_score=0.9, clear_s=600, severity="critical")
        create_rule(conn, org=org, name="pm-spikes", kind="anomaly", scope=RuleScope(quantity="pm2_5"),
                    anomaly_kinds=["spike"], min_score=0.5, clear_s=600)
    # the batch that makes the quantity's series brings them into the rules' scope
    pipeline.commit([_message(org, 0, [12.0, 13.0], BASE_T), _message(org, 1, [12.0], BASE_T, "air-2/pm2_5")])
    pipeline.commit([_message(org, 2, [12.0, 1500.0, 1400.0, 12.0], BASE_T + 120)])
    pipeline.commit([_message(org, 3, [1600.0], BASE_T + 600), _message(org, 4, [11.0], BASE_T + 60, "air-2/pm2_5")])
    (alarm,) = _alarms(database, org)
    assert (alarm.rule, alarm.kind, alarm.severity, alarm.device, alarm.quantity) == (
        "pm-faults", "anomaly", "critical", "air-1", "pm2_5")
    assert alarm.state == "open" and alarm.open_value == 1500.0 and alarm.hits == 3
    assert alarm.opened_at.timestamp() == BASE_T + 180 and alarm.last_at.timestamp() == BASE_T + 600
    assert alarm.detail["kind"] == "out_of_range" and alarm.detail["peak_score"] == 1.0
    pipeline.check_alarms()  # the readings are months old: 600 s without a flag have passed
    (alarm,) = _alarms(database, org)
    assert alarm.state == "cleared" and alarm.cleared_at.timestamp() == BASE_T + 600 + 600
    with psycopg.connect(database) as conn:
        assert [n[0] for n in conn.execute("SELECT state FROM notifications").fetchall()] == []  # no channel


def test_a_dead_sensor_raises_a_silence_alarm_without_a_late_reading(pipeline, database, org) -> None:
    pipeline.commit([_message(org, 0, [12.0 + (i % 3) for i in range(20)], BASE_T)])  # every 60 s
    with psycopg.connect(database) as conn:
        create_rule(conn, org=org, name="air-1-silent", kind="silence",
                    scope=RuleScope(device="air-1"), intervals=3)
    pipeline.rules.refresh(force=True)
    last_us = int((BASE_T + 19 * 60) * 1e6)
    pipeline.check_alarms(last_us + int(2.5 * MINUTE_US))
    assert _alarms(database, org) == []
    pipeline.check_alarms(last_us + 4 * MINUTE_US)
    pipeline.check_alarms(last_us + 5 * MINUTE_US)  # still silent: the same alarm
    (alarm,) = _alarms(database, org)
    assert (alarm.kind, alarm.state, alarm.device, alarm.open_value) == ("silence", "open", "air-1", None)
    assert alarm.opened_at.timestamp() == BASE_T + 19 * 60 + 3 * 60  # three intervals after the last reading
    assert alarm.detail["intervals"] == 3
    pipeline.commit([_message(org, 1, [14.0], BASE_T + 30 * 60)])  # it speaks again
    (alarm,) = _alarms(database, org)
    assert alarm.state == "cleared" and alarm.clear_value == 14.0
    assert alarm.cleared_at.timestamp() == BASE_T + 30 * 60


def test_gateway_offline_and_a_growing_buffer(pipeline, database, org) -> None:
    with psycopg.connect(database) as conn:
        create_rule(conn, org=org, name="gw-offline", kind="device", condition="offline", hold_s=60,
                    scope=RuleScope(device="gw-1"))
        create_rule(conn, org=org, name="gw-buffer", kind="device", condition="buffer", on=100, off=10, hold_s=30)
        status = dict(device="gw-1", org=org, boot_id="b", status={})
        record_gateway_status(conn, state="offline", buffer_depth=150, reported_at=_now(), **status)
    pipeline.rules.refresh(force=True)
    now_us = int(time.time() * 1e6)
    pipeline.check_alarms(now_us)  # offline for less than a minute; the buffer is watched from now
    assert _alarms(database, org) == []
    with psycopg.connect(database) as conn:
        conn.execute("UPDATE gateway_status SET received_at = now() - interval '2 minutes', buffer_depth = 150")
    pipeline.check_alarms(now_us + 40 * 1_000_000)  # 40 s at 150: above 100 but not growing
    assert [a.rule for a in _alarms(database, org)] == ["gw-offline"]
    with psycopg.connect(database) as conn:
        conn.execute("UPDATE gateway_status SET buffer_depth = 180")
    pipeline.check_alarms(now_us + 60 * 1_000_000)  # the window restarted at 40 s: not 30 s yet
    pipeline.check_alarms(now_us + 80 * 1_000_000)  # 180 after 40 s from 150: growing
    alarms = {a.rule: a for a in _alarms(database, org)}
    assert alarms["gw-buffer"].open_value == 180.0 and alarms["gw-buffer"].device == "gw-1"
    assert alarms["gw-buffer"].detail == {"buffer_depth": 180, "buffer_depth_before": 150}
    assert alarms["gw-offline"].detail == {"state": "offline"} and alarms["gw-offline"].series_id is None
    with psycopg.connect(database) as conn:
        record_gateway_status(conn, state="online", buffer_depth=5, reported_at=_now(), **status)
    pipeline.check_alarms(now_us + 90 * 1_000_000)
    assert {a.rule: a.state for a in _alarms(database, org)} == {"gw-offline": "cleared", "gw-buffer": "cleared"}
    assert [a.clear_value for a in _alarms(database, org, kind="device", states=("cleared",))] == [5.0, None]


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def test_a_threshold_rule_on_a_quantity_opens_one_alarm_per_series(pipeline, database, org) -> None:
    with psycopg.connect(database) as conn:
        create_rule(conn, org=org, name="pm25-class", scope=RuleScope(quantity="pm2_5"), on=25.0, off=20.0)
    pipeline.commit([_message(org, 0, [30.0, 31.0], BASE_T), _message(org, 1, [12.0, 40.0], BASE_T, "air-2/pm2_5")])
    pipeline.rules.refresh(force=True)  # a reload keeps both episodes
    pipeline.commit([_message(org, 2, [32.0, 19.0], BASE_T + 120), _message(org, 3, [41.0], BASE_T + 120,
                                                                             "air-2/pm2_5")])
    alarms = {(a.device, a.state): a for a in _alarms(database, org)}
    assert set(alarms) == {("air-1", "cleared"), ("air-2", "open")}
    assert alarms["air-1", "cleared"].clear_value == 19.0 and alarms["air-2", "open"].open_value == 40.0
    kept = alarms["air-2", "open"]  # updated while the condition lasts
    assert kept.hits == 2 and kept.last_at.timestamp() == BASE_T + 120 and kept.detail == {"last_value": 41.0}
    assert alarms["air-1", "cleared"].hits == 3  # 30, 31 and 32; 19 cleared it
