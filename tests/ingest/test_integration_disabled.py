"""A disabled integration stops being ingested promptly, although ingest cached it as enabled:
the registry check (every 2 s) sees the integration change and forgets the cached decision.
Uplinks published by a real client on the real broker, ingest service into a real PostgreSQL."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest import IngestOptions, IngestService
import lab_probes
from protocol.lorawan import LORAWAN_FILTERS
from storage.integrations import create_integration, set_integration_enabled
from storage.registry import register_device, set_dev_eui

pytestmark = pytest.mark.slow

EUI = "70B3D57ED0000042"


def _uplink(app: str, second: int) -> tuple[str, bytes]:
    at = f"2026-03-01T12:{second // 60:02d}:{second % 60:02d}Z"
    doc = {"end_device_ids": {"device_id": "node-1", "dev_eui": EUI, "application_ids": {"application_id": app}},
           "received_at": at,
           "uplink_message": {"f_port": 1, "f_cnt": second, "decoded_payload": {"temperature": 20.0 + second},
                              "received_at": at}}
    return f"v3/{app}@city/devices/node-1/up", json.dumps(doc).encode()


def _letters(database: str) -> list[str]:
    with psycopg.connect(database) as conn:
        return [r for (r,) in conn.execute("SELECT reason FROM dead_letters ORDER BY id")]


def test_a_disabled_integration_stops_being_ingested(database: str, mqtt_broker, org: str) -> None:
    app = f"app-{org}"
    with psycopg.connect(database, autocommit=True) as conn:
        register_device(conn, org=org, device="node-1", kind="lora")
        set_dev_eui(conn, "node-1", EUI, org=org)
        found = create_integration(conn, org=org, kind="tts", application_id=app, tenant_id="city")
    service = IngestService(IngestOptions(database_url=database, mqtt_url=mqtt_broker.url, client_id=f"ingest-{org}",
                                          batch_max_age_ms=20, filters=LORAWAN_FILTERS))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect(mqtt_broker.host, mqtt_broker.port)
    client.loop_start()

    def send(second: int) -> None:
        client.publish(*_uplink(app, second), qos=1).wait_for_publish(5)

    def wait(what: str, condition) -> None:
        lab_probes.wait(condition, 20, what, detail=lambda: service.totals)

    try:
        assert service.client.connected.wait(20)
        send(1)
        wait("the first uplink", lambda: service.totals["packs_stored"] == 1)  # the integration is now cached
        with psycopg.connect(database, autocommit=True) as conn:
            set_integration_enabled(conn, found.id, org=org, enabled=False)
        # uplinks keep coming; within the registry check's period they stop being stored
        second = 2
        while "integration_disabled" not in _letters(database):
            send(second)
            second += 1
            wait(f"uplink {second - 1}", lambda: service.totals["packs_received"] == second - 1)
            assert second < 200, "a disabled integration is still ingested"
        stored = service.totals["packs_stored"]
        send(second)
        wait("the last uplink", lambda: service.totals["packs_received"] == second)
        assert service.totals["packs_stored"] == stored  # and from then on, none
    finally:
        client.loop_stop()
        client.disconnect()
        stop.set()
        thread.join(15)
    assert _letters(database)[-2:] == ["integration_disabled", "integration_disabled"]
