"""Uplinks bridged from LoRaWAN network servers, through a real broker into the database."""

from __future__ import annotations

import base64
import json
import threading

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest import IngestOptions, IngestService
from lab_probes import wait
from protocol.lorawan import LORAWAN_FILTERS
from protocol.lpp import encode_lpp
from protocol.topics import ingest_filters
from storage.registry import register_device, set_dev_eui

pytestmark = pytest.mark.slow

EUI_TTS, EUI_CS, EUI_UNKNOWN = "70B3D57ED0000001", "A84041000181C9F2", "0000000000000BAD"


def _tts(app: str, eui: str, received_at: str) -> tuple[str, bytes]:
    doc = {
        "end_device_ids": {"device_id": "node-1", "dev_eui": eui, "application_ids": {"application_id": app}},
        "received_at": received_at,
        "uplink_message": {"f_port": 1, "f_cnt": 7, "frm_payload": "AWcBEA==",
                           "decoded_payload": {"temperature_1": 27.2, "relative_humidity_2": 41.5},
                           "received_at": received_at},
    }
    return f"v3/{app}@citylab/devices/node-1/up", json.dumps(doc).encode()


def _chirpstack(app: str, eui: str, time_: str) -> tuple[str, bytes]:
    raw = encode_lpp([(1, "temperature", 19.5), (2, "humidity", 60.0)])
    doc = {"deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d", "time": time_,
           "deviceInfo": {"devEui": eui.lower(), "deviceName": "cs-node", "applicationId": app},
           "fCnt": 10, "fPort": 1, "data": base64.b64encode(raw).decode()}
    return f"application/{app}/device/{eui.lower()}/event/up", json.dumps(doc).encode()


def test_uplinks_from_both_network_servers_are_stored_once(database: str, mqtt_broker, org: str) -> None:
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="tts-node", kind="lora")
        register_device(conn, org=org, device="cs-node", kind="lora")
        set_dev_eui(conn, "tts-node", EUI_TTS, org=org)
        set_dev_eui(conn, "cs-node", EUI_CS, {1: "temperature", 2: "humidity"}, org=org)
    service = IngestService(IngestOptions(database_url=database, mqtt_url=mqtt_broker.url, client_id=f"ingest-{org}",
                                          batch_max_age_ms=50, filters=ingest_filters(org) + LORAWAN_FILTERS))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect(mqtt_broker.host, mqtt_broker.port)
    client.loop_start()
    try:
        assert service.client.connected.wait(20), "ingest's subscription was not granted (no SUBACK)"
        app = org  # unique per test
        messages = [
            _tts(app, EUI_TTS, "2026-11-23T10:00:00.123456789Z"),
            _tts(app, EUI_TTS, "2026-11-23T10:00:00.123456789Z"),  # redelivered by the bridge
            _chirpstack(app, EUI_CS, "2026-11-23T10:05:00Z"),
            _tts(app, EUI_UNKNOWN, "2026-11-23T10:06:00Z"),
            (f"v3/{app}/devices/x/up", b"not json"),
        ]
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(5)

        def read_counters() -> dict[str, int]:
            with psycopg.connect(database) as conn:
                return dict(conn.execute("SELECT name, value FROM ingest_counters").fetchall())

        wait(lambda: read_counters()["packs_received"] == 4, 20, "ingest to receive the four uplinks",
             detail=read_counters)
        counters = read_counters()
        with psycopg.connect(database) as conn:
            rows = conn.execute(
                "SELECT s.device, s.quantity, s.unit, r.value, r.time FROM readings r JOIN series s ON s.id = r.series_id"
                " ORDER BY 1, 2").fetchall()
            reasons = sorted(r[0] for r in conn.execute("SELECT reason FROM dead_letters"))
    finally:
        stop.set()
        thread.join(10)
        client.loop_stop()
        client.disconnect()
    assert counters["packs_stored"] == 2 and counters["packs_duplicate"] == 1
    assert counters["packs_dead_lettered"] == 2
    assert reasons == ["undecodable", "unknown_dev_eui"]
    assert [(d, q, u, v) for d, q, u, v, _ in rows] == [
        ("cs-node", "humidity", "%RH", 60.0), ("cs-node", "temperature", "Cel", 19.5),
        ("tts-node", "relative_humidity_2", "%RH", 41.5), ("tts-node", "temperature_1", "Cel", 27.2),
    ]
    assert rows[2][4].isoformat() == "2026-11-23T10:00:00.123457+00:00"
