"""The real path, one device: pty → edge agent → Mosquitto → ingest → PostgreSQL → HTTP API.

The simulated firmware's ledger says what the device emitted; a subscriber on the
gateway's up topic records what the edge published (with the edge's timestamps).
Through the API we must find exactly those readings: every value, every timestamp,
nothing else.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from api.app import create_app
from citylab.settings import Settings
from firmware_sim import Ledger, SerialSensor, read_ledger
from ingest import IngestOptions, IngestService
from lab_probes import wait
from protocol.senml import decode_pack
from protocol.topics import ingest_filters, up_topic
from storage.registry import register_device
from storage.tenants import create_key, ensure_org

pytestmark = pytest.mark.slow

GATEWAY, SENSOR = "gw-e2e", "air-e2e"


def _edge_config(path: Path, *, org: str, mqtt_url: str, tty: str) -> Path:
    path.write_text(f"""
[gateway]
org = "{org}"
device = "{GATEWAY}"
status_interval_s = 1.0
[mqtt]
url = "{mqtt_url}"
[buffer]
path = "{path.parent / 'buffer.sqlite'}"
pack_max_readings = 10
pack_max_age_ms = 200
[[serial]]
path = "{tty}"
""")
    return path


def test_one_device_end_to_end(tmp_path: Path, database: str, mqtt_broker, org: str) -> None:
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device=GATEWAY, kind="gateway")
        register_device(conn, org=org, device=SENSOR, gateway=GATEWAY, kind="serial")

    # what the edge publishes, as an independent witness
    published = []
    witness = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    witness.on_message = lambda c, u, m: published.append(
        decode_pack(m.payload, content_type=getattr(m.properties, "ContentType", None)))
    witness.connect(mqtt_broker.host, mqtt_broker.port)
    witness.subscribe(up_topic(org, GATEWAY), qos=1)
    witness.loop_start()

    ingest = IngestService(IngestOptions(database_url=database, mqtt_url=mqtt_broker.url,
                                         client_id=f"ingest-{org}", batch_max_age_ms=50,
                                         filters=ingest_filters(org)))
    stop = threading.Event()
    ingest_thread = threading.Thread(target=ingest.run, args=(stop,), daemon=True)
    ingest_thread.start()
    assert ingest.client.connected.wait(30), "ingest's subscription was not granted"

    ledger = Ledger(tmp_path / "ledger.sqlite")
    sensor = SerialSensor(SENSOR, kind="air", period_s=0.1, seed=3, ledger=ledger)
    config = _edge_config(tmp_path / "edge.toml", org=org, mqtt_url=mqtt_broker.url, tty=sensor.path)
    edge = subprocess.Popen([sys.executable, "-m", "edge", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # pyserial flushes the port when it opens it: emit only once the agent says it has opened it
        agent_log: list[str] = []
        threading.Thread(target=lambda: agent_log.extend(iter(edge.stdout.readline, b"")), daemon=True).start()
        wait(lambda: any(f"opened {sensor.path}".encode() in line for line in agent_log), 30,
              "the edge agent to open the serial port")
        sensor.start()
        wait(lambda: len(read_ledger(tmp_path / "ledger.sqlite")) >= 40, 30, "the firmware to emit 40 readings")
        sensor.stop()
        emitted = read_ledger(tmp_path / "ledger.sqlite")
        assert len(emitted) >= 40

        def stored() -> int:
            with psycopg.connect(database) as conn:
                return conn.execute("SELECT count(*) FROM readings").fetchone()[0]

        wait(lambda: stored() >= len(emitted), 30, f"{len(emitted)} readings in the database")
    finally:
        edge.terminate()
        edge.wait(15)
        stop.set()
        ingest_thread.join(10)
        witness.loop_stop()
        witness.disconnect()
        sensor.close()
        ledger.close()

    # the witness saw every emitted reading once, stamped by the edge
    edge_readings = {}
    for pack in published:
        for record in pack.records:
            edge_readings[(pack.boot_id, pack.seq, record.name, record.time)] = record.value
    by_quantity: dict[str, list[tuple[int, float]]] = {}
    for (_, _, name, t), value in edge_readings.items():
        by_quantity.setdefault(name.split("/")[1], []).append((round(t * 1e6), value))

    ledger_values: dict[str, list[float]] = {}
    for reading in sorted(emitted, key=lambda r: r.seq):
        ledger_values.setdefault(reading.quantity, []).append(reading.value)

    with psycopg.connect(database, autocommit=True) as conn:  # the key of the test's organisation
        tenant = ensure_org(conn, slug=org, name=org, kind="provider")
        _, key = create_key(conn, org_id=tenant.id, role="consumer")
    client = TestClient(create_app(Settings(database_url=database)), headers={"Authorization": f"Bearer {key}"})
    with client:
        series = [s for s in client.get("/v1/series").json() if s["device"] == SENSOR]
        assert {s["quantity"] for s in series} == set(ledger_values)
        for s in series:
            want = sorted(by_quantity[s["quantity"]])
            start = "2000-01-01T00:00:00Z"
            body = client.get(f"/v1/series/{s['id']}/readings", params={"start": start, "limit": 100000}).json()
            got = [(_iso_to_us(r["time"]), r["value"]) for r in body["data"]]
            assert got == want, s["quantity"]
            # the values are the firmware's, in the order it emitted them
            assert [v for _, v in got] == ledger_values[s["quantity"]]


def _iso_to_us(text: str) -> int:
    from datetime import datetime

    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(moment.timestamp() * 1e6) if moment.microsecond == 0 else (
        int(moment.replace(microsecond=0).timestamp()) * 1_000_000 + moment.microsecond)
