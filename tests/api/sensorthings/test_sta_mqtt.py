"""The SensorThings MQTT extension (OGC 18-088 §14) on the lab's real Mosquitto with
dynamic security: real paho subscribers receive each Observation as it is committed,
whether it came over MQTT (the ingest worker) or HTTP (the API's one pipeline, for
SensorThings, /v1/ingest and NGSI-LD writes alike), and the
broker gives each API key's login only the Datastreams that key may read.

One test per requirement of the two MQTT conformance classes, named by its id:
create-observations-via-mqtt/observations-creation and receive-updates-via-mqtt/receive-updates.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as paho
import psycopg
import pytest
from ngsild_lab import link
from sta_lab import ROOT, StaLab
from stack import running_stack
from testbed import DYNSEC_ADMIN, DynsecBroker

from citylab.settings import Settings
from protocol.senml import SENML_JSON, Pack, Record, encode_pack
from protocol.topics import up_topic

pytestmark = pytest.mark.slow

REQ = "http://www.opengis.net/spec/iot_sensing/1.1/req/"


@pytest.fixture
def stack(fresh_lab: StaLab, dynsec: DynsecBroker):
    settings = Settings(database_url=fresh_lab.url, mqtt_url=dynsec.url, dynsec_username=DYNSEC_ADMIN,
                        dynsec_password=dynsec.admin_password)
    with running_stack(settings, dynsec) as running:
        yield running


class Subscriber:
    """A real paho client logged in with the credentials of MqttCredentials."""

    def __init__(self, creds: dict, *, client_id: str | None = None) -> None:
        parts = urlsplit(creds["url"])
        self.messages: queue.Queue = queue.Queue(maxsize=1000)
        self.connected = threading.Event()
        self.refused = threading.Event()
        self.granted: queue.Queue = queue.Queue(maxsize=100)
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or creds["client_id"],
                                  protocol=paho.MQTTv5)
        self.client.username_pw_set(creds["username"], creds["password"])
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda c, u, mid, reasons, p: self.granted.put([not r.is_failure for r in reasons])
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, json.loads(m.payload)))
        self.client.connect(parts.hostname, parts.port)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        (self.refused if reason.is_failure else self.connected).set()

    def subscribe(self, topic: str) -> bool:
        assert self.connected.wait(10)
        self.client.subscribe(topic, qos=1)
        return self.granted.get(timeout=10)[0]

    def next(self, timeout: float = 15) -> tuple[str, dict]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def subscriber(creds: dict, **kwargs) -> Iterator[Subscriber]:
    found = Subscriber(creds, **kwargs)
    try:
        yield found
    finally:
        found.close()


def credentials(api: str, headers: dict) -> dict:
    response = httpx.post(f"{api}{ROOT}/MqttCredentials", headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def _device(stack, fresh_lab: StaLab, prefix: str) -> tuple[str, dict, int]:
    """A device onboarded over /v1 with one noise sensor: its name, broker login and Datastream id."""
    device = f"{prefix}-{uuid.uuid4().hex[:6]}"
    made = httpx.post(f"{stack.api}/v1/devices", headers=fresh_lab.lab.headers, timeout=30, json={
        "device": device, "sensors": [{"quantity": "noise", "unit": "dB"}]}).json()
    thing = httpx.get(f"{stack.api}{ROOT}/Things", headers=fresh_lab.lab.headers,
                      params={"$filter": f"name eq '{device}'", "$expand": "Datastreams"}).json()["value"][0]
    return device, made["mqtt"], thing["Datastreams"][0]["@iot.id"]


class Device:
    """A device's own paho client; `publish` answers the broker's PUBACK reason."""

    def __init__(self, login: dict, url: str) -> None:
        parts = urlsplit(url)
        self.acks: queue.Queue = queue.Queue(maxsize=100)
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=login["client_id"], protocol=paho.MQTTv5)
        self.client.username_pw_set(login["username"], login["password"])
        self.client.on_publish = lambda c, u, mid, reason, p: self.acks.put(reason)
        self.client.connect(parts.hostname, parts.port)
        self.client.loop_start()

    def publish(self, topic: str, body: object) -> bool:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.client.publish(topic, payload, qos=1)
        return not self.acks.get(timeout=15).is_failure

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def committed(sub: Subscriber) -> tuple[str, dict]:
    """The next committed Observation (the broker also relays a device's own publish as it is)."""
    while True:
        topic, body = sub.next()
        if "@iot.id" in body:
            return topic, body


def test_req_receive_updates_via_mqtt_receive_updates(stack, fresh_lab: StaLab):
    """Observations reach the topics of their Datastream and FeatureOfInterest once committed,
    from HTTP and from MQTT ingest; a new Datastream reaches its Thing's Datastreams topic."""
    series = fresh_lab.series["noise-2/noise"]
    creds = credentials(stack.api, fresh_lab.lab.headers)
    topic = f"v1.1/Datastreams({series})/Observations"
    feature = f"v1.1/FeaturesOfInterest({fresh_lab.things['noise-2']})/Observations"
    assert topic in creds["topics"] and feature in creds["topics"]
    with subscriber(creds) as sub:
        assert sub.subscribe(topic) and sub.subscribe(feature)
        # over HTTP, through the API's pipeline
        posted = httpx.post(f"{stack.api}{ROOT}/Datastreams({series})/Observations", headers=fresh_lab.lab.headers,
                            json={"result": 71.5, "phenomenonTime": "2025-03-05T10:00:00Z"},
                            timeout=90)   # the API's first write opens its pipeline and its feed's login
        assert posted.status_code == 201, posted.text
        received = dict([sub.next(), sub.next()])
        assert set(received) == {topic, feature}
        for body in received.values():
            assert body == {"@iot.id": f"{series}-1741168800000000", "phenomenonTime": "2025-03-05T10:00:00.000000Z",
                            "resultTime": "2025-03-05T10:00:00.000000Z", "result": 71.5}
        assert posted.json()["@iot.id"] == received[topic]["@iot.id"]
        # over MQTT, through the ingest worker: a device onboarded with its broker login
        device, login, new_series = _device(stack, fresh_lab, "mq")
        with subscriber(credentials(stack.api, fresh_lab.lab.headers)) as fresh_sub:
            new_topic = f"v1.1/Datastreams({new_series})/Observations"
            assert fresh_sub.subscribe(new_topic)
            publisher = Device(login, stack.settings.mqtt_url)
            try:
                pack = Pack("boot-1", 1, (Record(f"{device}/noise", 55.25, 1741168860.0, "dB"),))
                assert publisher.publish(up_topic("lab", device), encode_pack(pack, content_type=SENML_JSON))
                got_topic, body = fresh_sub.next()
            finally:
                publisher.close()
        assert got_topic == new_topic and body["result"] == 55.25 and body["@iot.id"] == f"{new_series}-1741168860000000"
        # the first subscriber was not subscribed to the new Datastream
        assert sub.messages.empty()
    # a Thing's new Datastream reaches the Thing's Datastreams topic, as the entity a read answers
    thing = fresh_lab.things["noise-2"]
    datastreams = f"v1.1/Things({thing})/Datastreams"
    creds = credentials(stack.api, fresh_lab.lab.headers)
    assert datastreams in creds["topics"]
    with subscriber(creds) as sub:
        assert sub.subscribe(datastreams)
        op = httpx.get(f"{stack.api}{ROOT}/ObservedProperties", headers=fresh_lab.lab.headers,
                       params={"$filter": "name eq 'PM10'"}).json()["value"][0]
        created = httpx.post(f"{stack.api}{ROOT}/Things({thing})/Datastreams", headers=fresh_lab.lab.headers,
                             timeout=30, json={"unitOfMeasurement": {"name": "microgram per cubic metre"},
                                               "ObservedProperty": {"@iot.id": op["@iot.id"]}})
        assert created.status_code == 201, created.text
        got_topic, body = sub.next()
    assert got_topic == datastreams and body == created.json()


def test_req_receive_updates_via_mqtt_from_every_http_inlet(stack, fresh_lab: StaLab):
    """A reading POSTed to /v1/ingest with a device token, and one an NGSI-LD producer writes,
    reach the SensorThings subscribers of their Datastream: the API has one pipeline and one feed."""
    series = fresh_lab.series["noise-2/noise"]
    topic = f"v1.1/Datastreams({series})/Observations"
    token = httpx.post(f"{stack.api}/v1/ingest/tokens", headers=fresh_lab.lab.headers, json={"device": "noise-2"},
                       timeout=30)
    assert token.status_code == 201, token.text
    with subscriber(credentials(stack.api, fresh_lab.lab.headers)) as sub:
        assert sub.subscribe(topic)
        pack = [{"n": "noise-2/noise", "u": "dB", "v": 64.25, "t": 1741176000}]   # 2025-03-05T12:00:00Z
        posted = httpx.post(f"{stack.api}/v1/ingest", content=json.dumps(pack), timeout=90, headers={
            "Authorization": f"Bearer {token.json()['token']}", "Content-Type": SENML_JSON})
        assert posted.status_code == 201, posted.text
        assert sub.next() == (topic, {"@iot.id": f"{series}-1741176000000000",
                                      "phenomenonTime": "2025-03-05T12:00:00.000000Z",
                                      "resultTime": "2025-03-05T12:00:00.000000Z", "result": 64.25})
        patched = httpx.patch(
            f"{stack.api}/ngsi-ld/v1/entities/urn:ngsi-ld:NoiseLevelObserved:lab:noise-2/attrs", timeout=30,
            headers={**fresh_lab.lab.headers, **link("Environment")},
            json={"LAeq": {"type": "Property", "value": 66.5, "observedAt": "2025-03-05T12:01:00Z"}})
        assert patched.status_code == 204, patched.text
        assert sub.next() == (topic, {"@iot.id": f"{series}-1741176060000000",
                                      "phenomenonTime": "2025-03-05T12:01:00.000000Z",
                                      "resultTime": "2025-03-05T12:01:00.000000Z", "result": 66.5})


def test_req_create_observations_via_mqtt_observations_creation(stack, fresh_lab: StaLab):
    """A device publishes an Observation on its Datastream's topic; it goes through the ingest
    pipeline (stored once, a bad one dead-lettered) and its notification follows."""
    _, login, series = _device(stack, fresh_lab, "sta-mq")
    topic = f"v1.1/Datastreams({series})/Observations"
    observations = f"{stack.api}{ROOT}/Datastreams({series})/Observations"
    device = Device(login, stack.settings.mqtt_url)
    try:
        with subscriber(credentials(stack.api, fresh_lab.lab.headers)) as sub:
            assert sub.subscribe(topic)
            assert device.publish(topic, {"result": 61.5, "phenomenonTime": "2025-03-05T11:00:00Z"})
            got_topic, body = committed(sub)
            assert got_topic == topic
            assert body == {"@iot.id": f"{series}-1741172400000000", "phenomenonTime": "2025-03-05T11:00:00.000000Z",
                            "resultTime": "2025-03-05T11:00:00.000000Z", "result": 61.5}
            served = httpx.get(observations, headers=fresh_lab.lab.headers, params={"$count": "true"}).json()
            assert served["@iot.count"] == 1 and served["value"][0]["result"] == 61.5
            # the same Observation again is a duplicate; a second one is stored
            assert device.publish(topic, {"result": 61.5, "phenomenonTime": "2025-03-05T11:00:00Z"})
            assert device.publish(topic, {"result": 62.0, "phenomenonTime": "2025-03-05T11:01:00Z"})
            assert committed(sub)[1]["result"] == 62.0
            assert httpx.get(observations, headers=fresh_lab.lab.headers,
                             params={"$count": "true"}).json()["@iot.count"] == 2
            # a result that is not a number is a dead letter with its reason, never silently dropped
            assert device.publish(topic, {"result": "loud", "phenomenonTime": "2025-03-05T11:02:00Z"})
            with psycopg.connect(fresh_lab.url, autocommit=True) as conn:
                deadline = time.monotonic() + 20
                while not (letters := conn.execute("SELECT reason FROM dead_letters WHERE topic = %s",
                                                   (topic,)).fetchall()):
                    assert time.monotonic() < deadline, "the bad Observation was not dead-lettered"
                    threading.Event().wait(0.1)   # polling the database for the condition
            assert letters == [("bad_value",)]
        # the broker takes a device's Observations for its own Datastreams only
        assert not device.publish(f"v1.1/Datastreams({fresh_lab.series['noise-2/noise']})/Observations",
                                  {"result": 1.0})
        assert not device.publish("v1.1/Observations", {"result": 1.0, "Datastream": {"@iot.id": series}})
    finally:
        device.close()


def test_req_receive_updates_via_mqtt_acl_follows_the_key(stack, fresh_lab: StaLab):
    """A key's login subscribes to what the key may read (its own, and what a grant sold it), nothing else."""
    lab = credentials(stack.api, fresh_lab.lab.headers)
    city = credentials(stack.api, fresh_lab.city.headers)
    assert city["topics"] == []
    own, sold, unsold = (f"v1.1/Datastreams({fresh_lab.series[s]})/Observations"
                         for s in ("air-1/pm2_5", "other-1/pm10", "other-2/co2"))
    with subscriber(lab) as sub:
        assert sub.subscribe(own) and sub.subscribe(sold)
        assert not sub.subscribe(unsold)
        assert not sub.subscribe("v1.1/#") and not sub.subscribe("v1.1/+/Observations")
        assert not sub.subscribe("lab/other/other-2/up")
    with subscriber(city) as sub:
        assert not sub.subscribe(own)
    # the login is bound to its client id
    with subscriber(lab, client_id=f"someone-else-{uuid.uuid4().hex[:4]}") as intruder:
        deadline = time.monotonic() + 10
        while not intruder.refused.is_set() and time.monotonic() < deadline:
            assert not intruder.connected.is_set()
            intruder.refused.wait(0.1)
        assert intruder.refused.is_set()
    # a new call replaces the password: the old login no longer connects
    credentials(stack.api, fresh_lab.lab.headers)
    with subscriber(lab) as stale:
        assert stale.refused.wait(10) and not stale.connected.is_set()


def test_deleting_a_thing_deletes_its_broker_login(stack, fresh_lab: StaLab):
    device = f"gone-{uuid.uuid4().hex[:6]}"
    made = httpx.post(f"{stack.api}/v1/devices", headers=fresh_lab.lab.headers, timeout=30, json={
        "device": device, "sensors": [{"quantity": "noise", "unit": "dB"}]}).json()
    login = {"url": stack.settings.mqtt_url, **{k: made["mqtt"][k] for k in ("username", "password", "client_id")}}
    with subscriber(login) as before:
        assert before.connected.wait(10)
    thing = httpx.get(f"{stack.api}{ROOT}/Things", headers=fresh_lab.lab.headers,
                      params={"$filter": f"name eq '{device}'"}).json()["value"][0]["@iot.id"]
    deleted = httpx.delete(f"{stack.api}{ROOT}/Things({thing})", headers=fresh_lab.lab.headers, timeout=30)
    assert deleted.status_code == 200, deleted.text
    with subscriber(login) as after:
        assert after.refused.wait(10) and not after.connected.is_set()


def test_landing_page_announces_the_broker(stack, fresh_lab: StaLab):
    body = httpx.get(f"{stack.api}{ROOT}", timeout=30).json()["serverSettings"]
    for requirement in ("receive-updates-via-mqtt/receive-updates", "create-observations-via-mqtt/observations-creation"):
        assert REQ + requirement in body["conformance"]
        assert body[REQ + requirement]["endpoints"] == [stack.settings.mqtt_url]


def test_mqtt_credentials_need_the_broker(sta, sta_lab: StaLab):
    assert REQ + "receive-updates-via-mqtt/receive-updates" not in sta.get(ROOT).json()["serverSettings"]["conformance"]
    response = sta.post(f"{ROOT}/MqttCredentials")
    assert response.status_code == 503 and "dynamic security" in response.json()["detail"]
