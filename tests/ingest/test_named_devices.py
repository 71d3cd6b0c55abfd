"""Authorisation checks every device a pack names, not only the publisher, and
resolves names within the topic's organisation only (real PostgreSQL)."""

from __future__ import annotations

import psycopg
import pytest

from ingest import Message, Pipeline
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import up_topic
from storage.registry import register_device
from storage.tenants import set_device_enabled

BASE_T = 1_790_000_000.0


def _message(org: str, device: str, seq: int, names: list[str]) -> Message:
    pack = encode_pack(Pack(boot_id="boot-n", seq=seq, records=tuple(
        Record(name=name, value=1.0 + i, time=BASE_T + seq, unit="Cel") for i, name in enumerate(names))))
    return Message(topic=up_topic(org, device), payload=pack, mid=seq + 1, qos=1, content_type=None,
                   received_us=int(BASE_T * 1e6))


@pytest.fixture
def pipeline(database: str, org: str):
    other = f"{org}-b"
    with psycopg.connect(database) as conn:
        for tenant in (org, other):
            # both organisations have a gateway gw-1 with air-1 behind it
            register_device(conn, org=tenant, device="gw-1", kind="gateway")
            register_device(conn, org=tenant, device="air-1", gateway="gw-1", kind="serial")
        register_device(conn, org=org, device="air-off", gateway="gw-1", kind="serial")
        register_device(conn, org=org, device="gw-2", kind="gateway")
        register_device(conn, org=org, device="air-2", gateway="gw-2", kind="serial")
        register_device(conn, org=other, device="only-b", gateway="gw-1", kind="serial")
        set_device_enabled(conn, org=org, device="air-off", enabled=False)
        conn.commit()
    pipe = Pipeline(database)
    yield pipe
    pipe.close()


def test_each_named_device_is_checked(pipeline: Pipeline, database: str, org: str) -> None:
    other = f"{org}-b"
    result = pipeline.commit([
        _message(org, "gw-1", 0, ["air-1/temperature", "gw-1/temperature"]),   # fine
        _message(org, "gw-1", 1, ["air-1/temperature", "air-off/temperature"]),  # a disabled device behind it
        _message(org, "gw-1", 2, ["ghost/temperature"]),                          # unknown
        _message(org, "gw-1", 3, ["air-2/temperature"]),                          # behind another gateway
        _message(org, "gw-1", 4, ["only-b/temperature"]),                         # another org's name: unknown
        _message(other, "gw-1", 0, ["air-1/temperature"]),                        # B's own air-1: fine
    ])
    assert result.packs_stored == 2
    letters = {(d.org, d.detail.split("'")[1] if "'" in d.detail else d.detail, d.reason)
               for d in result.dead_letters}
    assert letters == {
        (org, "air-off/temperature", "device_disabled"),
        (org, "ghost/temperature", "unknown_device"),
        (org, "air-2", "not_behind_gateway"),
        (org, "only-b/temperature", "unknown_device"),
    }
    with psycopg.connect(database) as conn:
        stored = conn.execute(
            "SELECT s.org, s.device, r.value FROM readings r JOIN series s ON s.id = r.series_id"
            " ORDER BY s.org, s.device").fetchall()
        rows = conn.execute("SELECT org, reason FROM dead_letters ORDER BY id").fetchall()
        counters = dict(conn.execute(
            "SELECT name, value FROM ingest_org_counters WHERE org = %s", (org,)).fetchall())
    # nothing of the refused packs is stored, not even their good readings
    assert stored == [(org, "air-1", 1.0), (org, "gw-1", 2.0), (other, "air-1", 1.0)]
    assert sorted(rows) == sorted([(org, r) for r in (
        "device_disabled", "unknown_device", "not_behind_gateway", "unknown_device")])
    assert counters["packs_received"] == 5 and counters["packs_stored"] == 1
    assert counters["packs_dead_lettered"] == 4 and counters["readings_stored"] == 2


def test_disabling_a_device_behind_a_gateway_takes_effect(pipeline: Pipeline, database: str, org: str) -> None:
    assert pipeline.commit([_message(org, "gw-1", 0, ["air-1/temperature"])]).packs_stored == 1
    with psycopg.connect(database) as conn:
        set_device_enabled(conn, org=org, device="air-1", enabled=False)
        conn.commit()
    pipeline.resolver.refresh(every_s=0)
    result = pipeline.commit([_message(org, "gw-1", 1, ["air-1/temperature"])])
    assert [d.reason for d in result.dead_letters] == ["device_disabled"]
    assert "air-1" in result.dead_letters[0].detail
