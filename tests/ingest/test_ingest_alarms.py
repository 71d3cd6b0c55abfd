"""Alert rules through the ingest pipeline and a real PostgreSQL: an episode opens one alarm,
committed with its readings, cleared by the reading that ends it."""

from __future__ import annotations

import psycopg
import pytest

from ingest import Message, Pipeline
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import up_topic
from storage.alarms import create_rule, list_alarms
from storage.registry import register_device

BASE_T = 1_790_000_000.0


def _message(org: str, seq: int, values: list[float], start: float) -> Message:
    records = tuple(Record(name="air-1/pm2_5", value=v, time=start + 60.0 * i, unit="ug/m3")
                    for i, v in enumerate(values))
    payload = encode_pack(Pack(boot_id="boot-a", seq=seq, records=records))
    return Message(topic=up_topic(org, "gw-1"), payload=payload, mid=seq + 1, qos=1, content_type=None,
                   received_us=int(BASE_T * 1e6))


@pytest.fixture
def pipeline(database: str, org: str):
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="gw-1", kind="gateway")
        register_device(conn, org=org, device="air-1", gateway="gw-1", kind="serial")
    pipe = Pipeline(database)
    yield pipe
    pipe.close()


def test_a_rule_opens_one_alarm_per_episode(pipeline: Pipeline, database: str, org: str) -> None:
    pipeline.commit([_message(org, 0, [12.0, 13.0], BASE_T)])  # creates the series
    with psycopg.connect(database) as conn:
        sid = conn.execute("SELECT id FROM series WHERE org = %s AND quantity = 'pm2_5'", (org,)).fetchone()[0]
        create_rule(conn, org=org, name="pm25-class", series_id=sid, on=25.0, off=20.0, hold_s=15 * 60)
    pipeline.rules.refresh(force=True)
    # 20 minutes above 25: the alarm opens 15 minutes in, once
    pipeline.commit([_message(org, 1, [30.0] * 10, BASE_T + 120)])
    pipeline.commit([_message(org, 2, [31.0] * 10, BASE_T + 720)])
    with psycopg.connect(database) as conn:
        (alarm,) = list_alarms(conn, org=org)
    assert alarm.state == "open" and alarm.open_value == 31.0
    assert alarm.opened_at.timestamp() == BASE_T + 120 + 15 * 60
    pipeline.rules.refresh(force=True)  # a reload keeps the episode
    pipeline.commit([_message(org, 3, [22.0, 19.0], BASE_T + 1320)])  # hysteresis: 22 keeps it, 19 ends it
    with psycopg.connect(database) as conn:
        (alarm,) = list_alarms(conn, org=org)
    assert alarm.state == "cleared" and alarm.clear_value == 19.0
    assert alarm.cleared_at.timestamp() == BASE_T + 1320 + 60
    # updated while it lasted: the opening reading, the four after it, and 22 (above off) before 19
    assert alarm.hits == 6 and alarm.last_at.timestamp() == BASE_T + 1320 and alarm.detail == {"last_value": 22.0}
