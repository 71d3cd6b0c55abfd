"""NGSI-LD subscriptions with HTTP notifications to a real local receiver,
retries and delivery status, and the guard against request forgery; readings
published over MQTT through a real broker and ingest are notified too, from the
database's outbox (also when they were committed while no API ran)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.client as paho
import psycopg
import pytest
from fastapi.testclient import TestClient
from lab_probes import wait
from ngsild_lab import ERR, T0, NgsiLab, client, context_url, link, ngsi_lab, tenant  # noqa: F401 (fixtures)
from paho.mqtt.enums import CallbackAPIVersion
from testbed import Tenant

from api import create_app
from citylab.settings import Settings
from ingest import IngestOptions, IngestService, Message, Pipeline
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import ingest_filters, up_topic

BASE = "/ngsi-ld/v1"


class Receiver:
    """A real HTTP server on loopback that records the notifications it gets."""

    def __init__(self) -> None:
        self.received: list[tuple[dict, dict]] = []
        self.status = 204
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.changed:
                    receiver.received.append((dict(self.headers), body))
                    receiver.changed.notify_all()
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/notify"

    def wait_for(self, n: int, timeout: float = 20.0) -> list[tuple[dict, dict]]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.received) < n:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.received)} notifications, expected {n}"
                self.changed.wait(left)
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def subscription(uri: str, **extra) -> dict:
    return {"type": "Subscription", "entities": [{"type": "AirQualityObserved"}], "watchedAttributes": ["pm25"],
            "q": "pm25>20", "notification": {"endpoint": {"uri": uri}, "format": "keyValues",
                                             "attributes": ["pm25"]}, **extra}


def observe(client: TestClient, device: str, value: float, minute: int) -> None:
    at = (T0 + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
    r = client.patch(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:lab:{device}/attrs",
                     json={"pm25": {"value": value, "observedAt": at}}, headers=link("Environment"))
    assert r.status_code == 204, r.text


wait_until = partial(wait, timeout=20.0)


def test_notification_after_commit_with_status(client: TestClient, receiver: Receiver) -> None:
    r = client.post(f"{BASE}/subscriptions", json=subscription(receiver.url), headers=link("Environment"))
    assert r.status_code == 201, r.text
    sub_url = r.headers["Location"]
    observe(client, "air-1", 15.0, 30)      # q does not hold: no notification
    observe(client, "air-1", 31.5, 31)
    (headers, body), = receiver.wait_for(1)
    assert body["type"] == "Notification" and body["subscriptionId"] == sub_url.rsplit("/", 1)[1]
    assert body["data"] == [{"id": "urn:ngsi-ld:AirQualityObserved:lab:air-1", "type": "AirQualityObserved",
                             "pm25": 31.5}]
    assert context_url("Environment") in headers["Link"]
    status = wait_until(lambda: client.get(sub_url, headers=link("Environment")).json()["notification"]
                        if client.get(sub_url).json()["notification"]["timesSent"] == 1 else None)
    assert status["status"] == "ok" and "lastSuccess" in status
    assert len(receiver.received) == 1
    listed = client.get(f"{BASE}/subscriptions", params={"count": "true"}, headers=link("Environment"))
    assert listed.headers["NGSILD-Results-Count"] == "1"
    assert listed.json()[0]["watchedAttributes"] == ["pm25"]


@pytest.mark.slow
def test_failed_deliveries_are_retried_and_recorded(client: TestClient, receiver: Receiver) -> None:
    receiver.status = 500
    sub_url = client.post(f"{BASE}/subscriptions", json=subscription(receiver.url),
                          headers=link("Environment")).headers["Location"]
    observe(client, "air-2", 45.0, 30)
    assert len(receiver.wait_for(4)) == 4           # the first try and three retries
    notification = wait_until(lambda: (n := client.get(sub_url).json()["notification"])["timesSent"] and n)
    assert notification["status"] == "failed" and notification["timesFailed"] == 1
    assert "500" in notification["lastErrorReason"]


def test_patch_pause_and_delete(client: TestClient, receiver: Receiver) -> None:
    sub_url = client.post(f"{BASE}/subscriptions", json=subscription(receiver.url),
                          headers=link("Environment")).headers["Location"]
    assert client.patch(sub_url, json={"isActive": False}).status_code == 204
    assert client.get(sub_url).json()["status"] == "paused"
    observe(client, "air-1", 50.0, 40)
    assert client.patch(sub_url, json={"isActive": True, "q": "pm25>60"}).status_code == 204
    observe(client, "air-1", 61.0, 41)
    (_, body), = receiver.wait_for(1)
    assert body["data"][0]["pm25"] == 61.0, body
    assert client.delete(sub_url).status_code == 204
    assert client.get(sub_url).json()["type"] == ERR + "ResourceNotFound"


@pytest.mark.parametrize("uri", ["http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://169.254.169.254/latest",
                                 "http://[::1]/x", "ftp://example.org/x", "http://192.168.1.1/x"])
def test_endpoints_at_private_addresses_are_refused(ngsi_lab: NgsiLab, tenant: Tenant, uri: str) -> None:
    with TestClient(create_app(Settings(database_url=ngsi_lab.url)), headers=tenant.headers) as client:
        r = client.post(f"{BASE}/subscriptions", json=subscription(uri), headers=link("Environment"))
    assert r.status_code == 400 and r.json()["type"] == ERR + "BadRequestData"


def test_subscription_errors(client: TestClient, receiver: Receiver) -> None:
    bad = [{"type": "Subscription", "notification": {"endpoint": {"uri": receiver.url}}},
           {"type": "Subscription", "entities": [{"type": "AirQualityObserved"}]},
           {**subscription(receiver.url), "q": "pm25>>1"},
           {**subscription(receiver.url), "throttling": -1},
           {**subscription(receiver.url), "type": "Thing"}]
    for body in bad:
        r = client.post(f"{BASE}/subscriptions", json=body, headers=link("Environment"))
        assert r.status_code == 400 and r.json()["type"] == ERR + "BadRequestData", (body, r.text)
    body = {**subscription(receiver.url), "id": "urn:ngsi-ld:Subscription:one"}
    assert client.post(f"{BASE}/subscriptions", json=body, headers=link("Environment")).status_code == 201
    r = client.post(f"{BASE}/subscriptions", json=body, headers=link("Environment"))
    assert r.status_code == 409 and r.json()["type"] == ERR + "AlreadyExists"


@pytest.fixture
def ingest(ngsi_lab: NgsiLab, mqtt_broker) -> Iterator[IngestService]:
    """The ingest service of organisation `lab` on the real broker."""
    service = IngestService(IngestOptions(
        database_url=ngsi_lab.url, mqtt_url=mqtt_broker.url, client_id=f"ingest-{uuid.uuid4().hex[:8]}",
        batch_max_age_ms=50, filters=ingest_filters("lab")))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    wait_until(service.client.connected.is_set)
    yield service
    stop.set()
    thread.join(10)


def test_readings_published_over_mqtt_are_notified(client: TestClient, receiver: Receiver, ingest: IngestService,
                                                   mqtt_broker) -> None:
    """Ingest records what it committed in the database's outbox; the API's notifier delivers it."""
    assert client.post(f"{BASE}/subscriptions", json=subscription(receiver.url),
                       headers=link("Environment")).status_code == 201
    publisher = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    publisher.connect("127.0.0.1", mqtt_broker.port)
    publisher.loop_start()
    try:
        pack = Pack("boot-mqtt", 1, (Record("air-2/pm2_5", 48.5, (T0 + timedelta(hours=2)).timestamp(), "ug/m3"),))
        publisher.publish(up_topic("lab", "air-2"), encode_pack(pack), qos=1).wait_for_publish(10)
        (_, body), = receiver.wait_for(1)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
    assert body["data"] == [{"id": "urn:ngsi-ld:AirQualityObserved:lab:air-2", "type": "AirQualityObserved",
                             "pm25": 48.5}]
    with psycopg.connect(client.app.state.settings.database_url) as conn:
        assert wait_until(lambda: conn.execute("SELECT count(*) = 0 FROM ngsild_changes").fetchone()[0])


def test_changes_committed_while_no_api_runs_are_notified_when_it_starts(ngsi_lab: NgsiLab, tenant: Tenant,
                                                                        receiver: Receiver) -> None:
    settings = Settings(database_url=ngsi_lab.url, outbound_allow_loopback=True)
    with TestClient(create_app(settings), headers=tenant.headers) as client:
        assert client.post(f"{BASE}/subscriptions", json=subscription(receiver.url),
                           headers=link("Environment")).status_code == 201
    pipeline = Pipeline(ngsi_lab.url)
    try:
        pack = Pack("boot-x", 7, (Record("air-1/pm2_5", 27.0, (T0 + timedelta(hours=3)).timestamp(), "ug/m3"),))
        message = Message(topic=up_topic("lab", "air-1"), payload=encode_pack(pack), mid=1, qos=1,
                          content_type=None, received_us=0)
        assert pipeline.commit([message]).packs_stored == 1
    finally:
        pipeline.close()
    with psycopg.connect(ngsi_lab.url) as conn:
        assert conn.execute("SELECT org, device, quantities FROM ngsild_changes").fetchall() == [
            ("lab", "air-1", ["pm2_5"])]
    assert receiver.received == []
    with TestClient(create_app(settings), headers=tenant.headers):
        (_, body), = receiver.wait_for(1)
    assert body["data"][0]["id"] == "urn:ngsi-ld:AirQualityObserved:lab:air-1" and body["data"][0]["pm25"] == 27.0
