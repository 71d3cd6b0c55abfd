"""The SensorThings MQTT feed (ingest.observation_feed) on a real Mosquitto: the
vectorised encoding against json.dumps, the topics of Datastreams and
FeaturesOfInterest, QoS 0 with the feed's user property, and the bounded queue
that drops (and counts) what ingest has no time for."""

from __future__ import annotations

import json
import math
import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.observation_feed import FeedOptions, ObservationFeed, encode_observations
from protocol.topics import STA_FEED_PROPERTY

pytestmark = pytest.mark.slow


def naive_observation(series: int, micros: int, value: float) -> dict:
    """The slow, obviously correct twin of encode_observations."""
    when = datetime.fromtimestamp(micros / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"@iot.id": f"{series}-{micros}", "phenomenonTime": when, "resultTime": when,
            "result": value if math.isfinite(value) else None}


def test_encoding_matches_its_naive_twin() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.normal(0, 1e6, 200), [np.nan, np.inf, -np.inf, -0.0, 1e-300, 1e300, 3.0]])
    series = rng.integers(1, 2**31 - 1, len(values))
    times = rng.integers(0, 4_000_000_000_000_000, len(values))
    encoded = encode_observations(series, times, values)
    assert [json.loads(e) for e in encoded] == [naive_observation(*row) for row in
                                               zip(series.tolist(), times.tolist(), values.tolist())]
    assert encode_observations(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0)) == []


class Client:
    def __init__(self, port: int, *, topic: str | None = None) -> None:
        self.messages: queue.Queue = queue.Queue(maxsize=1000)
        self.ready = threading.Event()
        self.paho = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.paho.on_message = lambda c, u, m: self.messages.put(
            (m.topic, m.qos, json.loads(m.payload), list(getattr(m.properties, "UserProperty", []))))
        self.paho.on_subscribe = lambda *args: self.ready.set()
        self.paho.on_connect = lambda *args: self.paho.subscribe(topic, qos=1) if topic else self.ready.set()
        self.paho.connect("127.0.0.1", port)
        self.paho.loop_start()
        assert self.ready.wait(10)

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


@pytest.fixture
def clients(mqtt_broker, org: str) -> Iterator[tuple[Client, Client]]:
    publisher, subscriber = Client(mqtt_broker.port), Client(mqtt_broker.port, topic="v1.1/#")
    yield publisher, subscriber
    publisher.close()
    subscriber.close()


def test_committed_readings_reach_their_datastream_and_feature(clients) -> None:
    publisher, subscriber = clients
    feed = ObservationFeed(publisher.paho, features=lambda ids: np.where(ids == 7, 42, -1))
    try:
        feed(np.array([7, 8], np.int32), np.array([1741168800000000, 1741168860000000]), np.array([1.5, np.nan]))
        got = sorted(subscriber.messages.get(timeout=10) for _ in range(3))
    finally:
        feed.close()
    assert [(topic, qos) for topic, qos, _, _ in got] == [
        ("v1.1/Datastreams(7)/Observations", 0), ("v1.1/Datastreams(8)/Observations", 0),
        ("v1.1/FeaturesOfInterest(42)/Observations", 0)]
    assert got[0][2] == got[2][2] == naive_observation(7, 1741168800000000, 1.5)
    assert got[1][2]["result"] is None
    assert all(props == [STA_FEED_PROPERTY] for *_, props in got)
    assert feed.published == 3 and feed.dropped == 0


def test_a_full_feed_drops_and_counts_instead_of_waiting(clients) -> None:
    publisher, subscriber = clients
    feed = ObservationFeed(publisher.paho, options=FeedOptions(max_pending=5))
    try:
        feed(np.arange(10, dtype=np.int32), np.arange(10, dtype=np.int64), np.ones(10))   # more than the queue holds
        feed(np.array([3], np.int32), np.array([0]), np.array([2.0]))
        topic, _, body, _ = subscriber.messages.get(timeout=10)
    finally:
        feed.close()
    assert topic == "v1.1/Datastreams(3)/Observations" and body["result"] == 2.0
    assert feed.dropped == 10 and feed.published == 1
