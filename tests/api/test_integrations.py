"""LoRaWAN integrations that connect: POST /v1/integrations gives a network server a broker login
allowed its own uplink topics only; ingest (with its real dynsec role) subscribes to them and stores
the uplinks of the organisation's own DevEUIs only. Real Mosquitto with dynamic security, real
PostgreSQL, payloads in The Things Stack v3's documented shape."""

from __future__ import annotations

import json
import secrets
import threading

import paho.mqtt.client as paho
import psycopg
import pytest
from fastapi.testclient import TestClient
from lab_probes import wait
from paho.mqtt.enums import CallbackAPIVersion
from testbed import DynsecBroker, broker_accepts, make_tenant

from citylab.broker_security import DynSec, url_with_credentials
from citylab.probes import probe_ingest
from citylab.settings import Settings
from ingest import IngestOptions, IngestService
from protocol.lorawan import LORAWAN_FILTERS
from storage.registry import register_device, set_dev_eui

pytestmark = pytest.mark.slow


def _uplink(dev_eui: str, device_id: str, fcnt: int) -> bytes:
    return json.dumps({
        "end_device_ids": {"device_id": device_id, "application_ids": {"application_id": "city-air"},
                           "dev_eui": dev_eui},
        "received_at": f"2026-03-01T12:00:0{fcnt}.123456789Z",
        "uplink_message": {"f_port": 1, "f_cnt": fcnt, "received_at": f"2026-03-01T12:00:0{fcnt}.123456789Z",
                           "decoded_payload": {"temperature": 20.0 + fcnt, "Bat": "3.384 V"}},
    }).encode()


def _connect(url: str, username: str, password: str, client_id: str) -> paho.Client:
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.username_pw_set(username, password)
    host, port = url.split("://")[1].split(":")
    client.connect(host, int(port))
    client.loop_start()
    return client


def _puback(client: paho.Client, topic: str, payload: bytes) -> int:
    codes: list[int] = []
    done = threading.Event()

    def on_publish(c, userdata, mid, reason_code, properties) -> None:
        codes.append(reason_code.value)
        done.set()

    client.on_publish = on_publish
    client.publish(topic, payload, qos=1)
    assert done.wait(10), "no PUBACK"
    return codes[0]


def test_integration_login_publishes_its_topics_only_and_ingest_stores_own_dev_euis(
        testbed_app: TestClient, testbed_settings: Settings, dynsec: DynsecBroker) -> None:
    url = testbed_settings.database_url
    city = make_tenant(url, name=f"Air {secrets.token_hex(3)}", kind="provider")
    other = make_tenant(url, name=f"Other {secrets.token_hex(3)}", kind="provider")
    with psycopg.connect(url) as conn:
        register_device(conn, org=city.slug, device="node-1", kind="lora")
        set_dev_eui(conn, "node-1", "0004A30B001C0530", org=city.slug)
        register_device(conn, org=other.slug, device="theirs", kind="lora")
        set_dev_eui(conn, "theirs", "0004A30B001C0999", org=other.slug)

    created = testbed_app.post("/v1/integrations", headers=city.headers,
                               json={"kind": "tts", "application_id": "city-air", "tenant_id": "city"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["topic"] == "v3/city-air@city/devices/+/up" and body["mqtt"]["password"]
    assert testbed_app.post("/v1/integrations", headers=other.headers,
                            json={"kind": "tts", "application_id": "city-air", "tenant_id": "city"}).status_code == 409
    listed = testbed_app.get("/v1/integrations", headers=city.headers).json()
    assert [i["id"] for i in listed] == [body["id"]] and "mqtt" not in listed[0]
    assert testbed_app.get("/v1/integrations", headers=other.headers).json() == []

    # ingest with its real broker role, subscribed to the network servers' uplinks
    admin = DynSec(dynsec.url, username=testbed_settings.dynsec_username, password=testbed_settings.dynsec_password)
    user, password = f"ingest-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    ingest_id = admin.create_ingest(user, password)
    service = IngestService(IngestOptions(database_url=url, mqtt_url=url_with_credentials(dynsec.url, user, password),
                                          client_id=ingest_id, batch_max_age_ms=50, filters=LORAWAN_FILTERS))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    network_server = None
    try:
        assert service.client.connected.wait(20), "ingest's subscriptions were not granted"
        mqtt = body["mqtt"]
        network_server = _connect(dynsec.url, mqtt["username"], mqtt["password"], mqtt["client_id"])
        assert _puback(network_server, "v3/city-air@city/devices/node-1/up", _uplink("0004A30B001C0530", "node-1", 1)) < 128
        assert _puback(network_server, "v3/city-air@city/devices/theirs/up", _uplink("0004A30B001C0999", "theirs", 2)) < 128
        located = json.dumps({
            "end_device_ids": {"device_id": "node-1", "application_ids": {"application_id": "city-air"},
                               "dev_eui": "0004A30B001C0530"},
            "received_at": "2026-03-01T12:00:05.5Z",
            "location_solved": {"service": "lora-cloud-device-management-v1-gnss",
                                "location": {"latitude": 58.97, "longitude": 5.73, "source": "SOURCE_GPS"}}})
        assert _puback(network_server, "v3/city-air@city/devices/node-1/location/solved", located.encode()) < 128
        # any other topic is refused by the broker: 135 not authorised
        assert _puback(network_server, "v3/other-app@city/devices/x/up", _uplink("0004A30B001C0530", "x", 3)) == 135
        assert _puback(network_server, f"lab/{city.slug}/node-1/up", b"[]") == 135
        wait(lambda: service.totals["packs_stored"] + service.totals["packs_dead_lettered"] >= 3, 20,
             "three uplinks taken")
    finally:
        if network_server is not None:
            network_server.loop_stop()
            network_server.disconnect()
        stop.set()
        thread.join(15)
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT s.org, s.quantity, s.unit, r.value FROM readings r JOIN series s"
                            " ON s.id = r.series_id WHERE s.org IN (%s, %s) ORDER BY s.quantity",
                            (city.slug, other.slug)).fetchall()
        letters = conn.execute("SELECT org, reason FROM dead_letters WHERE topic LIKE 'v3/%%'").fetchall()
    assert rows == [(city.slug, "Bat", "V", 3.384), (city.slug, "latitude", "lat", 58.97),
                    (city.slug, "longitude", "lon", 5.73), (city.slug, "temperature", "Cel", 21.0)]
    assert letters == [(city.slug, "unknown_dev_eui")]  # the other organisation's DevEUI, refused


def test_a_refused_subscription_is_reported(testbed_settings: Settings, dynsec: DynsecBroker) -> None:
    """A login without the right to the network servers' topics (a device's) gets SUBACK 135: ingest
    records which filters were refused and never reports itself connected."""
    admin = DynSec(dynsec.url, username=testbed_settings.dynsec_username, password=testbed_settings.dynsec_password)
    org = f"o{secrets.token_hex(3)}"
    with psycopg.connect(testbed_settings.database_url) as conn:
        register_device(conn, org=org, device="d-1")
    creds = admin.create_device(org, "d-1")
    service = IngestService(IngestOptions(
        database_url=testbed_settings.database_url, client_id=creds.client_id, batch_max_age_ms=50,
        mqtt_url=url_with_credentials(dynsec.url, creds.username, creds.password), filters=LORAWAN_FILTERS,
        metrics_port=0))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait(lambda: service.client.refused_subscriptions, 20, "a SUBACK refusal")
        assert set(service.client.refused_subscriptions) == set(LORAWAN_FILTERS)
        assert all("authori" in code.lower() for code in service.client.refused_subscriptions.values())
        assert not service.client.connected.is_set()
        assert service.metrics.registry.get_sample_value("citylab_subscriptions_refused") == len(LORAWAN_FILTERS)
        # `citylab status` and /health read the same probe: ingest is down, naming each refusal
        health = probe_ingest(f"http://127.0.0.1:{service.metrics.port}/metrics")
        assert health.up is False and "v3/+/devices/+/up" in health.detail
        assert {(r["server"], r["filter"]) for r in health.refused_subscriptions} == {
            ("broker", f) for f in LORAWAN_FILTERS}
        assert all(r["reason"] == "Not authorized" for r in health.refused_subscriptions)
    finally:
        stop.set()
        thread.join(15)


def test_cli_creates_an_integration(testbed_settings: Settings, dynsec: DynsecBroker) -> None:
    import os
    import subprocess
    import sys

    tenant = make_tenant(testbed_settings.database_url, name=f"Cli {secrets.token_hex(3)}", kind="provider")
    env = {**os.environ, "CITYLAB_DATABASE_URL": testbed_settings.database_url, "CITYLAB_MQTT_URL": dynsec.url,
           "CITYLAB_DYNSEC_USERNAME": testbed_settings.dynsec_username,
           "CITYLAB_DYNSEC_PASSWORD": testbed_settings.dynsec_password}
    done = subprocess.run([sys.executable, "-m", "citylab", "integration", "create", "--org", tenant.slug,
                           "--kind", "chirpstack", "--application-id", "0b8c6b1a-5f1e-4c8e-9a37-0c1d2e3f4a5b",
                           "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["topic"] == "application/0b8c6b1a-5f1e-4c8e-9a37-0c1d2e3f4a5b/device/+/event/up"
    client = _connect(dynsec.url, out["mqtt"]["username"], out["mqtt"]["password"], out["mqtt"]["client_id"])
    try:
        assert _puback(client, "application/0b8c6b1a-5f1e-4c8e-9a37-0c1d2e3f4a5b/device/0004a30b001c0530/event/up",
                       b"{}") < 128
        assert _puback(client, "application/0b8c6b1a-5f1e-4c8e-9a37-0c1d2e3f4a5b/device/0004a30b001c0530/event/status",
                       b"{}") < 128
        assert _puback(client, "v3/city-air@city/devices/node-1/up", b"{}") == 135
        # disabled: the integration and its broker login
        done = subprocess.run([sys.executable, "-m", "citylab", "integration", "disable", "--org", tenant.slug,
                               "--id", str(out["id"])], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "disabled" in done.stdout, done.stderr
    finally:
        client.loop_stop()
        client.disconnect()
    assert not broker_accepts(dynsec.host, dynsec.port, out["mqtt"]["username"], out["mqtt"]["password"],
                              out["mqtt"]["client_id"])
    # subscribe mode: the API key from standard input, never printed
    key = "NNSXS." + secrets.token_hex(16)
    done = subprocess.run([sys.executable, "-m", "citylab", "integration", "create", "--org", tenant.slug,
                           "--kind", "tts", "--application-id", "cli-air", "--tenant-id", "ttn", "--json",
                           "--server-url", "mqtts://eu1.cloud.thethings.network:8883",
                           "--server-username", "cli-air@ttn", "--api-key-file", "-"],
                          env=env, input=key + "\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert made["mode"] == "subscribe" and "mqtt" not in made and key not in done.stdout
    with psycopg.connect(testbed_settings.database_url) as conn:
        assert conn.execute("SELECT api_key FROM integration_secrets WHERE integration_id = %s",
                            (made["id"],)).fetchone() == (key,)


def test_chirpstack_documentation_events_through_its_integration_login(
        testbed_app: TestClient, testbed_settings: Settings, dynsec: DynsecBroker) -> None:
    """ChirpStack v4's MQTT integration publishes its documented `up`, `status` and `location` events
    with the integration's login; ingest (its real broker role) stores them as series."""
    url = testbed_settings.database_url
    city = make_tenant(url, name=f"Cs {secrets.token_hex(3)}", kind="provider")
    app = "17c82e96-be03-4f38-aef3-" + secrets.token_hex(6)
    with psycopg.connect(url) as conn:
        register_device(conn, org=city.slug, device="test-device", kind="lora")
        set_dev_eui(conn, "test-device", "0101010101010101", org=city.slug)
    created = testbed_app.post("/v1/integrations", headers=city.headers,
                               json={"kind": "chirpstack", "application_id": app})
    assert created.status_code == 201, created.text
    mqtt = created.json()["mqtt"]
    info = {"tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242", "tenantName": "ChirpStack", "applicationId": app,
            "applicationName": "Test application", "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
            "deviceProfileName": "Test device-profile", "deviceName": "Test device", "devEui": "0101010101010101",
            "tags": {"key": "value"}}
    # the documented UplinkEvent (Cayenne LPP codec: `object`), StatusEvent and LocationEvent
    events = {
        "up": {"deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d", "time": "2022-07-18T09:34:15.775023242+00:00",
               "deviceInfo": info, "devAddr": "00189440", "dr": 1, "fCnt": 10, "fPort": 1, "data": "A2cBEAVnAP8=",
               "object": {"temperatureSensor": {"3": 27.2, "5": 25.5}},
               "rxInfo": [{"gatewayId": "0016c001f153a14c", "uplinkId": 4217106255, "rssi": -36, "snr": 10.5,
                           "context": "E3OWOQ==", "metadata": {"region_name": "eu868", "region_common_name": "EU868"}}],
               "txInfo": {"frequency": 867100000,
                          "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 11, "codeRate": "CR_4_5"}}}},
        "status": {"deduplicationId": "9e5b3f6e-0d84-4ab4-9b0e-4ffbcb6fb1b1", "time": "2022-07-18T09:35:15.1Z",
                   "deviceInfo": info, "margin": 6, "externalPowerSource": False, "batteryLevelUnavailable": False,
                   "batteryLevel": 75.5},
        "location": {"deduplicationId": "0e6bdf1e-2c1a-4a0e-8a52-1a8f4b0b2a3c", "time": "2022-07-18T09:36:15Z",
                     "deviceInfo": info, "location": {"latitude": 58.97, "longitude": 5.73, "altitude": 12.0,
                                                      "source": "GEO_RESOLVER_TDOA", "accuracy": 20}},
    }
    admin = DynSec(dynsec.url, username=testbed_settings.dynsec_username, password=testbed_settings.dynsec_password)
    user, password = f"ingest-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    service = IngestService(IngestOptions(database_url=url, mqtt_url=url_with_credentials(dynsec.url, user, password),
                                          client_id=admin.create_ingest(user, password), batch_max_age_ms=50,
                                          filters=LORAWAN_FILTERS))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    network_server = None
    try:
        assert service.client.connected.wait(20), "ingest's subscriptions were not granted"
        network_server = _connect(dynsec.url, mqtt["username"], mqtt["password"], mqtt["client_id"])
        for event, doc in events.items():
            topic = f"application/{app}/device/0101010101010101/event/{event}"
            assert _puback(network_server, topic, json.dumps(doc).encode()) < 128
        wait(lambda: service.totals["packs_stored"] + service.totals["packs_dead_lettered"] >= 3, 20,
             "three uplinks taken")
    finally:
        if network_server is not None:
            network_server.loop_stop()
            network_server.disconnect()
        stop.set()
        thread.join(15)
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT s.quantity, s.unit, r.value, r.time FROM readings r JOIN series s"
                            " ON s.id = r.series_id WHERE s.org = %s ORDER BY r.time, s.quantity", (city.slug,)).fetchall()
    assert [(q, u, v) for q, u, v, _ in rows] == [
        ("temperature_3", "Cel", 27.2), ("temperature_5", "Cel", 25.5),
        ("battery", "%EL", 75.5), ("link_margin", "dB", 6.0),
        ("altitude", "m", 12.0), ("latitude", "lat", 58.97), ("longitude", "lon", 5.73)]
    assert rows[0][3].isoformat() == "2022-07-18T09:34:15.775023+00:00"  # nanoseconds rounded exactly
