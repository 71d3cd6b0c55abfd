"""One Cayenne LPP frame holding every standard and extended type, published to a real Mosquitto on
lab/{org}/{device}/lpp/{port} and stored by the ingest service in a real PostgreSQL."""

from __future__ import annotations

import threading

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest import IngestOptions, IngestService
from lab_probes import wait
from protocol.lpp import _TYPES
from protocol.topics import ingest_filters, lpp_topic
from storage.registry import register_device

pytestmark = pytest.mark.slow


def test_every_lpp_type_through_the_broker(database: str, mqtt_broker, org: str) -> None:
    frame = bytearray()
    expected: dict[str, tuple[str | None, float]] = {}
    for channel, kind in enumerate(_TYPES):
        frame += bytes([channel, kind.code])
        for number, field in enumerate(kind.fields, start=1):
            raw = number * 7  # small, positive, distinct per axis
            frame += raw.to_bytes(field.size, "big", signed=field.signed)
            expected[f"{field.kind}_{channel}"] = (field.unit, raw / field.divisor)
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="node-1", kind="lora")
    service = IngestService(IngestOptions(database_url=database, mqtt_url=mqtt_broker.url, client_id=f"lpp-{org}",
                                          batch_max_age_ms=50, filters=ingest_filters(org)))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    publisher = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    try:
        assert service.client.connected.wait(20)
        publisher.connect("127.0.0.1", mqtt_broker.port)
        publisher.loop_start()
        publisher.publish(lpp_topic(org, "node-1", 2), bytes(frame), qos=1).wait_for_publish(10)
        wait(lambda: service.totals["packs_stored"] + service.totals["packs_dead_lettered"] >= 1, 20,
             "ingest to handle the frame", detail=lambda: service.totals)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        stop.set()
        thread.join(15)
    assert service.totals["packs_dead_lettered"] == 0
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT s.quantity, s.unit, r.value FROM readings r JOIN series s ON s.id = r.series_id"
                            " WHERE s.org = %s", (org,)).fetchall()
    assert {q: (u, v) for q, u, v in rows} == expected
    assert len(rows) == len(expected) >= len(_TYPES)
