"""Uplinks that hold no reading are dead letters, not stored packs of 0 readings (real PostgreSQL)."""

from __future__ import annotations

import json

import psycopg

from ingest import Message, Pipeline
from storage.registry import register_device, set_dev_eui

TOPIC = "v3/city-app@city/devices/node-1/up"


def _uplink(decoded: dict, mid: int, **top) -> Message:
    doc = {"end_device_ids": {"device_id": "node-1", "dev_eui": "0004A30B001C0530"},
           "uplink_message": {"f_port": 2, "f_cnt": mid, "received_at": f"2026-03-01T12:00:0{mid}.123456789Z",
                              "decoded_payload": decoded}, **top}
    return Message(topic=TOPIC, payload=json.dumps(doc).encode(), mid=mid, qos=1, content_type=None,
                   received_us=1_772_366_400_000_000)


def test_simulated_and_empty_uplinks_are_dead_letters(database: str, org: str) -> None:
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="node-1", kind="lora")
        set_dev_eui(conn, "node-1", "0004A30B001C0530", org=org)
    pipeline = Pipeline(database)
    try:
        result = pipeline.commit([
            _uplink({"Bat": "3.384 V", "temperature": 21.5}, 1),
            _uplink({"temperature": 99.0}, 2, simulated=True),
            _uplink({"Status": "OK"}, 3),
        ])
    finally:
        pipeline.close()
    assert (result.packs_stored, result.readings_stored) == (1, 2)
    assert sorted(d.reason for d in result.dead_letters) == ["no_readings", "simulated_uplink"]
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT s.quantity, s.unit, r.value, (extract(epoch FROM r.time - timestamptz 'epoch')"
                            " * 1000000)::bigint FROM readings r JOIN series s ON s.id = r.series_id"
                            " WHERE s.org = %s ORDER BY s.quantity", (org,)).fetchall()
    assert rows == [("Bat", "V", 3.384, 1_772_366_401_123_457), ("temperature", "Cel", 21.5, 1_772_366_401_123_457)]
