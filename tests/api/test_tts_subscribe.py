"""The Things Stack integrations that citylab subscribes to: POST /v1/integrations with the TTS MQTT
server's address, username and API key; ingest connects to that server itself, subscribes to the
application's topics and stores the uplinks through the same pipeline. A second, private Mosquitto
with dynamic security plays The Things Stack's MQTT server (username `{app}@{tenant}`, the API key
as password, subscribe rights on the application's topics only); its application server publishes
the JSON of The Things Stack v3's documentation. Real PostgreSQL; real citylab broker for ingest."""

from __future__ import annotations

import copy
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
import pytest
from fastapi.testclient import TestClient
from lab_probes import wait
from paho.mqtt.enums import CallbackAPIVersion
from testbed import Tenant, make_tenant

from api import create_app
from citylab.broker_security import DynSec
from citylab.embedded import MosquittoServer, free_port, start_mosquitto
from citylab.settings import Settings
from ingest import IngestOptions, IngestService
from protocol.topics import ingest_filters
from storage.registry import register_device, set_dev_eui

pytestmark = pytest.mark.slow

TTS_ADMIN = "tts-admin"
EUI, EUI_OTHER = "0004A30B001C0530", "0004A30B001C0999"

# The uplink of The Things Stack's "Data Formats" documentation (Cayenne LPP formatter example).
UPLINK = {
    "end_device_ids": {"device_id": "air-042", "application_ids": {"application_id": "city-air"},
                       "dev_eui": EUI, "join_eui": "800000000000000C", "dev_addr": "00BCB929"},
    "correlation_ids": ["as:up:01E0WZGT6Y7657CPFPE5WEYDSQ", "gs:conn:01E0WDEC6T5T4XXBAX7S1VMFKE",
                        "ns:uplink:01E0WZGSZXZXZS8RFAWZX0F2FY"],
    "received_at": "2020-02-12T15:15:46.014773143Z",
    "uplink_message": {
        "session_key_id": "AXA50tHUGUucuzS/bCGMNw==", "f_port": 8, "f_cnt": 113, "frm_payload": "A2cBEAVnAP8=",
        "decoded_payload": {"temperature_3": 27.200000762939453, "temperature_5": 25.5},
        "rx_metadata": [{"gateway_ids": {"gateway_id": "gtw1", "eui": "9C5C8E00001A05C4"},
                         "time": "2020-02-12T15:15:45.787Z", "timestamp": 2463457000, "rssi": -35,
                         "channel_rssi": -35, "snr": 5, "channel_index": 2}],
        "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}}, "coding_rate": "4/6",
                     "frequency": "868300000"},
        "received_at": "2020-02-12T15:15:45.789585559Z", "consumed_airtime": "0.056576s",
    },
}
# The "location/solved" message of the same documentation.
LOCATION = {
    "end_device_ids": {"device_id": "air-042", "application_ids": {"application_id": "city-air"}, "dev_eui": EUI},
    "correlation_ids": ["as:up:01E0WZGT6Y7657CPFPE5WEYDSQ"],
    "received_at": "2020-02-12T15:15:47.5Z",
    "location_solved": {"service": "lora-cloud-device-management-v1-gnss",
                        "location": {"latitude": 37.97155556731436, "longitude": 23.72678801175413,
                                     "altitude": 2, "source": "SOURCE_GPS"}},
}


def _uplink(received_at: str, *, dev_eui: str = EUI, device_id: str = "air-042", **message) -> bytes:
    doc = copy.deepcopy(UPLINK)
    doc["end_device_ids"].update(dev_eui=dev_eui, device_id=device_id)
    doc["uplink_message"].update(received_at=received_at, **message)
    return json.dumps(doc).encode()


@pytest.fixture(scope="module")
def tts(services_dir: Path) -> Iterator[tuple[MosquittoServer, DynSec]]:
    """The Things Stack's MQTT server: anonymous clients refused, one login per application."""
    password = secrets.token_urlsafe(16)
    server = start_mosquitto(services_dir, dynsec=(TTS_ADMIN, password), name="mosquitto-tts")
    try:
        yield server, DynSec(server.url, username=TTS_ADMIN, password=password)
    finally:
        server.stop()


def _application(admin: DynSec, app: str, *, topics: tuple[str, ...] = ("#",)) -> str:
    """A TTS application's MQTT login ({app}@{tenant}, an API key) that may subscribe to `topics` of it."""
    key = "NNSXS." + secrets.token_hex(20).upper()
    acls = [{"acltype": "subscribePattern", "topic": f"v3/{app}/{t}", "allow": True} for t in topics]
    admin.create_service(app, key, acls=acls, role=f"app:{app}", client_id=None)
    return key


def _application_server(server: MosquittoServer, admin: DynSec) -> paho.Client:
    """The Things Stack's Application Server, publishing every application's events."""
    password = secrets.token_urlsafe(16)
    admin.create_service("as", password, acls=[{"acltype": "publishClientSend", "topic": "v3/#", "allow": True}],
                         role="as", client_id="as")
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="as", protocol=paho.MQTTv311)
    client.username_pw_set("as", password)
    client.connect(server.host, server.port)
    client.loop_start()
    return client


def _service(database: str, mqtt_broker, org: str) -> tuple[IngestService, threading.Event, threading.Thread]:
    service = IngestService(IngestOptions(database_url=database, mqtt_url=mqtt_broker.url, client_id=f"ingest-{org}",
                                          batch_max_age_ms=50, filters=ingest_filters(org), subscribe_servers=True,
                                          metrics_port=0))
    service.servers.poll_s = 0.2
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    return service, stop, thread


def _wait(condition, what: str, timeout: float = 20.0) -> None:
    wait(condition, timeout, what)


def _subscribed(service: IngestService, integration_id: int) -> bool:
    client = service.servers.clients.get(integration_id) if service.servers else None
    return client is not None and client.connected.is_set()


def _create(client: TestClient, tenant: Tenant, app: str, tenant_id: str, server: MosquittoServer, key: str) -> dict:
    answer = client.post("/v1/integrations", headers=tenant.headers, json={
        "kind": "tts", "application_id": app, "tenant_id": tenant_id,
        "server": {"url": server.url, "username": f"{app}@{tenant_id}", "api_key": key}})
    assert answer.status_code == 201, answer.text
    return answer.json()


def _readings(database: str, org: str) -> list[tuple]:
    with psycopg.connect(database) as conn:
        return conn.execute("SELECT s.device, s.quantity, s.unit, r.value FROM readings r JOIN series s"
                            " ON s.id = r.series_id WHERE s.org = %s ORDER BY r.time, s.quantity", (org,)).fetchall()


def test_ingest_subscribes_to_the_things_stack(database: str, mqtt_broker, org: str, tts) -> None:
    server, admin = tts
    city = make_tenant(database, name=f"Air {secrets.token_hex(3)}", kind="provider")
    other = make_tenant(database, name=f"Other {secrets.token_hex(3)}", kind="provider")
    with psycopg.connect(database) as conn:
        register_device(conn, org=city.slug, device="air-042", kind="lora")
        set_dev_eui(conn, "air-042", EUI, org=city.slug)
        register_device(conn, org=other.slug, device="theirs", kind="lora")
        set_dev_eui(conn, "theirs", EUI_OTHER, org=other.slug)
    app = f"city-air-{secrets.token_hex(3)}"
    key = _application(admin, f"{app}@city")
    with TestClient(create_app(Settings(database_url=database))) as api:
        created = _create(api, city, app, "city", server, key)
        assert created["mode"] == "subscribe" and "mqtt" not in created
        assert created["server_username"] == f"{app}@city" and created["topic"] == f"v3/{app}@city/devices/+/up"
        listed = api.get("/v1/integrations", headers=city.headers)
        assert key not in json.dumps(created) and key not in listed.text  # the API key is never returned
        assert [i["id"] for i in listed.json()] == [created["id"]]

        publisher = _application_server(server, admin)
        service, stop, thread = _service(database, mqtt_broker, org)
        try:
            _wait(lambda: _subscribed(service, created["id"]), "ingest did not subscribe to the TTS server")
            up = f"v3/{app}@city/devices/air-042/up"
            publisher.publish(up, _uplink("2026-03-01T12:00:00.123456789Z"), qos=0).wait_for_publish(5)
            # no decoded payload: the frame itself, Cayenne LPP
            raw = _uplink("2026-03-01T12:00:01Z")
            doc = json.loads(raw)
            del doc["uplink_message"]["decoded_payload"]
            publisher.publish(up, json.dumps(doc).encode(), qos=0).wait_for_publish(5)
            publisher.publish(f"v3/{app}@city/devices/air-042/location/solved", json.dumps(LOCATION).encode(),
                              qos=0).wait_for_publish(5)
            publisher.publish(f"v3/{app}@city/devices/theirs/up",
                              _uplink("2026-03-01T12:00:02Z", dev_eui=EUI_OTHER, device_id="theirs"),
                              qos=0).wait_for_publish(5)
            publisher.publish(up, _uplink("2026-03-01T12:00:03Z", simulated=True), qos=0).wait_for_publish(5)
            _wait(lambda: service.totals["packs_stored"] + service.totals["packs_dead_lettered"] >= 5,
                  f"ingest took {service.totals}")

            # disabled: ingest drops its connection to the server, and nothing more is stored
            assert api.post(f"/v1/integrations/{created['id']}/disable", headers=city.headers).json()["enabled"] is False
            _wait(lambda: created["id"] not in service.servers.clients, "the disabled integration is still subscribed")
            publisher.publish(up, _uplink("2026-03-01T12:00:04Z"), qos=0).wait_for_publish(5)
            assert api.post(f"/v1/integrations/{created['id']}/enable", headers=city.headers).json()["enabled"] is True
            _wait(lambda: _subscribed(service, created["id"]), "ingest did not subscribe again")
            publisher.publish(up, _uplink("2026-03-01T12:00:05Z"), qos=0).wait_for_publish(5)
            _wait(lambda: service.totals["packs_stored"] >= 4, f"ingest took {service.totals}")
        finally:
            publisher.loop_stop()
            publisher.disconnect()
            stop.set()
            thread.join(15)
    assert _readings(database, city.slug) == [
        ("air-042", "altitude", "m", 2.0), ("air-042", "latitude", "lat", 37.97155556731436),  # at 2020-02-12
        ("air-042", "longitude", "lon", 23.72678801175413),
        ("air-042", "temperature_3", "Cel", 27.200000762939453), ("air-042", "temperature_5", "Cel", 25.5),
        ("air-042", "temperature_3", "Cel", 27.2), ("air-042", "temperature_5", "Cel", 25.5),
        ("air-042", "temperature_3", "Cel", 27.200000762939453), ("air-042", "temperature_5", "Cel", 25.5),
    ]
    with psycopg.connect(database) as conn:
        letters = conn.execute("SELECT org, reason FROM dead_letters ORDER BY id").fetchall()
        times = conn.execute("SELECT DISTINCT r.time FROM readings r JOIN series s ON s.id = r.series_id"
                             " WHERE s.quantity = 'temperature_5' ORDER BY 1").fetchall()
        secret = conn.execute("SELECT api_key FROM integration_secrets").fetchone()[0]
    assert letters == [(city.slug, "unknown_dev_eui"), (city.slug, "simulated_uplink")]
    assert [t.isoformat() for (t,) in times] == ["2026-03-01T12:00:00.123457+00:00", "2026-03-01T12:00:01+00:00",
                                                  "2026-03-01T12:00:05+00:00"]  # not :04, sent while disabled
    assert secret == key
    assert _readings(database, other.slug) == []


def test_a_refused_subscription_makes_health_degraded(database: str, mqtt_broker, org: str, tts,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """The server lets the API key read uplinks but not location events: SUBACK refuses one filter;
    ingest logs it, and /health and `citylab status` (through ingest's metrics) say ingest is down,
    naming the integration, the filter and the reason. A wrong API key is a refused connection,
    named the same way."""
    server, admin = tts
    city = make_tenant(database, name=f"Weak {secrets.token_hex(3)}", kind="provider")
    app = f"weak-{secrets.token_hex(3)}"
    key = _application(admin, f"{app}@city", topics=("devices/+/up",))
    wrong = f"bad-{secrets.token_hex(3)}"
    _application(admin, f"{wrong}@city")
    with TestClient(create_app(Settings(database_url=database))) as api:
        weak = _create(api, city, app, "city", server, key)
        bad = _create(api, city, wrong, "city", server, "NNSXS.NOT-THE-KEY")
    service, stop, thread = _service(database, mqtt_broker, org)
    try:
        def refused() -> dict:
            return service.refused_subscriptions()

        _wait(lambda: len(refused()) == 3, f"refusals seen: {refused()}")
        location = f"v3/{app}@city/devices/+/location/solved"
        assert set(refused()) == {(f"integration-{weak['id']}", location),
                                  (f"integration-{bad['id']}", f"v3/{wrong}@city/devices/+/up"),
                                  (f"integration-{bad['id']}", f"v3/{wrong}@city/devices/+/location/solved")}
        metrics_url = f"http://127.0.0.1:{service.metrics.port}/metrics"
        with TestClient(create_app(Settings(database_url=database, ingest_metrics_url=metrics_url))) as api:
            health = api.get("/health")
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "degraded"
        ingest = body["components"]["ingest"]
        assert ingest["up"] is False and location in ingest["detail"]
        by_filter = {r["filter"]: r for r in ingest["refused_subscriptions"]}
        assert by_filter[location]["server"] == f"integration-{weak['id']}"
        assert by_filter[location]["reason"] in ("Unspecified error", "Failure")  # MQTT 3.1.1 SUBACK 0x80
        assert by_filter[f"v3/{wrong}@city/devices/+/up"]["reason"].startswith("connection refused: ")
        assert f"refused subscriptions (SUBACK): {location}" in caplog.text
        status = subprocess.run([sys.executable, "-m", "citylab", "status", "--json"], capture_output=True, text=True,
                                timeout=60, env={**os.environ, "CITYLAB_DATABASE_URL": database,
                                                 "CITYLAB_INGEST_METRICS_URL": metrics_url})
        assert status.returncode == 1, status.stderr
        report = json.loads(status.stdout)
        assert report["health"] == "degraded" and report["components"]["ingest"]["up"] is False
        assert location in {r["filter"] for r in report["components"]["ingest"]["refused_subscriptions"]}
    finally:
        stop.set()
        thread.join(15)


def test_an_unreachable_network_server_is_named_until_it_answers(database: str, mqtt_broker, org: str,
                                                                 services_dir: Path) -> None:
    """A subscribe-mode integration whose server does not answer (nothing listens on its port)
    shows in /health as refused with the reason `unreachable`, and is gone from it once a server
    answers there and grants the subscriptions."""
    port = free_port()
    city = make_tenant(database, name=f"Far {secrets.token_hex(3)}", kind="provider")
    app = f"far-{secrets.token_hex(3)}"
    with TestClient(create_app(Settings(database_url=database))) as api:
        answer = api.post("/v1/integrations", headers=city.headers, json={
            "kind": "tts", "application_id": app, "tenant_id": "city",
            "server": {"url": f"mqtt://127.0.0.1:{port}", "username": f"{app}@city", "api_key": "NNSXS.FAR"}})
        assert answer.status_code == 201, answer.text
        server = f"integration-{answer.json()['id']}"
    service, stop, thread = _service(database, mqtt_broker, org)
    revived = None
    try:
        _wait(lambda: any(s == server for s, _ in service.refused_subscriptions()), "the server found unreachable")
        metrics_url = f"http://127.0.0.1:{service.metrics.port}/metrics"
        with TestClient(create_app(Settings(database_url=database, ingest_metrics_url=metrics_url))) as api:
            health = api.get("/health")
        assert health.status_code == 503
        ingest = health.json()["components"]["ingest"]
        mine = [r for r in ingest["refused_subscriptions"] if r["server"] == server]
        assert {r["filter"] for r in mine} == {f"v3/{app}@city/devices/+/up", f"v3/{app}@city/devices/+/location/solved"}
        assert all(r["reason"] == f"unreachable: 127.0.0.1:{port} does not answer" for r in mine)
        assert server in ingest["detail"]
        revived = start_mosquitto(services_dir, port=port, name=f"mosquitto-far-{port}")   # anonymous: grants all
        _wait(lambda: not any(s == server for s, _ in service.refused_subscriptions()), "the server answering",
              timeout=40)
        assert _subscribed(service, int(server.split("-")[1]))
    finally:
        stop.set()
        thread.join(15)
        if revived is not None:
            revived.stop()
