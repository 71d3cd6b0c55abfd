"""The SensorThings MQTT feed: each committed reading as an Observation on the
standard's topics (OGC 18-088 §14.2, receive updates via MQTT).

    v1.1/Datastreams({series id})/Observations          {"@iot.id": "{series id}-{UTC µs}",
    v1.1/FeaturesOfInterest({thing id})/Observations     "phenomenonTime", "resultTime", "result"}
                                                        (a located device's FeatureOfInterest)

The pipeline calls the feed after each committed piece (`Pipeline(on_commit=...)`)
with the piece's columns, so a subscriber sees only what is stored, once (a
duplicate pack stores nothing and publishes nothing). The call only hands the
columns on, off ingest's critical path:

    commit ──on_commit──▶ bounded queue (readings) ──▶ feed thread: the batch's JSON in
                          full: the batch is dropped     numpy string operations, then
                          and counted                    QoS 0 publishes in chunks

The live feed is a notification, not a delivery: it is QoS 0 (which the MQTT
extension allows), and when ingest is behind — the queue holds `max_pending`
readings, or the feed reaches `max_rate` messages a second — new batches are
dropped and counted (`dropped`), never waited for. Every chunk waits until the
client's socket has taken the previous one, so ingest's acknowledgements, on the
same connection, never queue behind more than one chunk of the feed. The rows
are committed either way, and the HTTP face serves them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol.topics import STA_FEED_PROPERTY, STA_VERSION, feature_topic, observation_topic
from storage.db import connect
from storage.sensorthings.feed import series_features

__all__ = ["FEED_PROPERTIES", "FeatureIndex", "FeedOptions", "ObservationFeed", "encode_observations"]

logger = logging.getLogger("citylab.ingest.feed")

FEED_PROPERTIES = Properties(PacketTypes.PUBLISH)   # on every message of the feed
FEED_PROPERTIES.UserProperty = [STA_FEED_PROPERTY]

#: series ids -> the FeatureOfInterest id of each (-1: none); raises when the registry cannot be read
FeatureLookup = Callable[[np.ndarray], np.ndarray]


def encode_observations(series_id: np.ndarray, time_us: np.ndarray, value: np.ndarray) -> list[bytes]:
    """Each reading as the JSON of its Observation, built with numpy string operations
    over the whole batch (no per-reading Python formatting).

    >>> encode_observations(np.array([7]), np.array([1741168800000000]), np.array([71.5]))
    [b'{"@iot.id":"7-1741168800000000","phenomenonTime":"2025-03-05T10:00:00.000000Z","resultTime":"2025-03-05T10:00:00.000000Z","result":71.5}']
    """
    if not len(series_id):
        return []
    add = np.strings.add
    micros = np.asarray(time_us, dtype=np.int64)
    ids = add(add(np.asarray(series_id, dtype=np.int64).astype("S"), b"-"), micros.astype("S"))
    times = add(np.datetime_as_string(micros.astype("datetime64[us]"), unit="us").astype("S"), b'Z"')
    head = add(add(b'{"@iot.id":"', ids), b'","phenomenonTime":"')
    head = add(add(add(add(head, times), b',"resultTime":"'), times), b',"result":')
    values = np.asarray(value, dtype=np.float64)
    # the shortest text that reads back as the same float (Python's repr; numpy's formatting is slower)
    results = [repr(v).encode() for v in values.tolist()]
    if not np.isfinite(values).all():   # JSON has no NaN or infinity
        for i in np.flatnonzero(~np.isfinite(values)).tolist():
            results[i] = b"null"
    return [h + r + b"}" for h, r in zip(head.tolist(), results)]


class FeatureIndex:
    """series id -> FeatureOfInterest id, read from the registry on a connection of its own
    (opened by the feed's thread), read again when a series it does not know comes (at
    most every `reload_s`) and every `refresh_s` (a device located later)."""

    def __init__(self, database_url: str, *, reload_s: float = 5.0, refresh_s: float = 60.0) -> None:
        self._url = database_url
        self.reload_s = reload_s
        self.refresh_s = refresh_s
        self._conn: psycopg.Connection | None = None
        self._known = np.zeros(0, np.int64)          # every series id seen when last loaded
        self._series = np.zeros(0, np.int64)
        self._features = np.zeros(0, np.int64)
        self._loaded_at = float("-inf")

    def __call__(self, series_id: np.ndarray) -> np.ndarray:
        age = time.monotonic() - self._loaded_at
        if age >= self.refresh_s or (age >= self.reload_s and not np.isin(series_id, self._known).all()):
            self._load()
            self._known = np.union1d(self._known, series_id)
        at = np.searchsorted(self._series, series_id)
        at = np.minimum(at, max(len(self._series) - 1, 0))
        found = (self._series[at] == series_id) if len(self._series) else np.zeros(len(series_id), bool)
        return np.where(found, self._features[at] if len(self._series) else -1, -1)

    def _load(self) -> None:
        self._loaded_at = time.monotonic()
        try:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self._url, autocommit=True, application_name="citylab-sta-feed")
            self._series, self._features = series_features(self._conn)
        except Exception:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


@dataclass(frozen=True, slots=True)
class FeedOptions:
    """How much of ingest the live feed may take."""

    max_pending: int = 50_000    # readings waiting for the feed thread; a batch beyond is dropped
    chunk: int = 500             # messages handed to the client before waiting for its socket
    max_rate: float = 20_000.0   # messages a second at most


class ObservationFeed:
    """Publishes committed readings on `client` (a connected paho client), from a thread of its own.

    `features` names each series' FeatureOfInterest (None: Datastream topics only).
    Counters: `published` messages, `dropped` readings whose Datastream message was not
    sent (queue full, rate reached, broker away), `failures` batches that could not be encoded.
    """

    def __init__(self, client: paho.Client, *, features: FeatureLookup | None = None,
                 options: FeedOptions | None = None) -> None:
        self.client = client
        self.features = features
        self.options = options or FeedOptions()
        self.published = 0
        self.dropped = 0
        self.failures = 0
        self._pending = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sta-feed", daemon=True)
        self._thread.start()

    def __call__(self, series_id: np.ndarray, time_us: np.ndarray, value: np.ndarray) -> None:
        """Hand a committed piece on; never blocks, never raises into the pipeline."""
        n = len(series_id)
        with self._lock:
            if self._pending + n > self.options.max_pending:
                self.dropped += n
                return
            self._pending += n
        self._queue.put((series_id, time_us, value))

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout_s)

    @property
    def pending(self) -> int:
        return self._pending

    # -- the feed's thread -------------------------------------------------------------
    def _run(self) -> None:
        budget, refilled = float(self.options.chunk), time.monotonic()
        while (item := self._queue.get()) is not None:
            series_id, time_us, value = item
            with self._lock:
                self._pending -= len(series_id)
            try:
                messages = self._messages(series_id, time_us, value)
            except Exception:   # committed already: the feed never fails the commit
                self.failures += 1
                logger.exception("encoding committed Observations failed")
                continue
            for start in range(0, len(messages), self.options.chunk):
                now = time.monotonic()
                budget = min(float(self.options.max_rate), budget + (now - refilled) * self.options.max_rate)
                refilled = now
                chunk = messages[start:start + self.options.chunk]
                if budget < len(chunk):   # over the rate: the rest of this batch is dropped
                    self._drop(_readings(messages[start:]))
                    break
                budget -= len(chunk)
                self._publish(chunk)
                # wait until the socket took the chunk: acknowledgements queue behind one chunk at most
                while self.client.want_write() and not self._stop.wait(0.002):
                    pass

    def _messages(self, series_id: np.ndarray, time_us: np.ndarray, value: np.ndarray) -> list[tuple[str, bytes]]:
        bodies = encode_observations(series_id, time_us, value)
        unique, index = np.unique(np.asarray(series_id, dtype=np.int64), return_inverse=True)
        topics = [observation_topic(s) for s in unique.tolist()]
        messages = [(topics[i], body) for i, body in zip(index.tolist(), bodies)]
        if self.features is not None:
            try:
                features = self.features(unique)
            except Exception as exc:   # the Datastream topics go out all the same
                logger.warning("FeatureOfInterest topics skipped: %s", exc)
                return messages
            located = features[index] >= 0
            if located.any():
                feature_topics = {int(f): feature_topic(f) for f in np.unique(features[features >= 0]).tolist()}
                messages += [(feature_topics[f], bodies[i]) for i, f in
                             zip(np.flatnonzero(located).tolist(), features[index][located].tolist())]
        return messages

    def _publish(self, chunk: list[tuple[str, bytes]]) -> None:
        unsent = []
        for message in chunk:
            if self.client.publish(*message, qos=0, properties=FEED_PROPERTIES).rc == paho.MQTT_ERR_SUCCESS:
                self.published += 1
            else:   # not connected: the live feed does not wait for the broker
                unsent.append(message)
        self._drop(_readings(unsent))

    def _drop(self, readings: int) -> None:
        with self._lock:
            self.dropped += readings


def _readings(messages: list[tuple[str, bytes]]) -> int:
    """The readings among `messages` (each has one message on its Datastream's topic)."""
    return sum(1 for topic, _ in messages if topic.startswith(f"{STA_VERSION}/Datastreams("))
