"""The API's one door into the ingest pipeline: every HTTP inlet commits through it.

    POST /v1/ingest                          api/routes/ingest.py (device tokens, broker logins)
    POST /sta/v1.1/Observations, ...         api/sensorthings/writes.py
    NGSI-LD observations of our devices      api/ngsild/observations.py

One `ingest.Pipeline` per API process, made on first use and used by one request at
a time: one set of database connections, one per-series stream state (a series
written through two inlets is scored by one detector), the same validation,
de-duplication, dead letters and counters as MQTT. With the SensorThings MQTT feed
configured (`CITYLAB_STA_MQTT_FEED` and the broker's dynamic security), every
committed reading is published to its Datastream's topics, whatever inlet it came
through, as the MQTT ingest service does for its own commits.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

from api.sensorthings.mqtt import FeedPublisher
from citylab.broker_security import DynSec
from citylab.settings import Settings
from ingest import CommitResult, Message, Pipeline
from ingest.observation_feed import FEED_PROPERTIES, FeatureIndex, ObservationFeed
from protocol.errors import TopicError
from protocol.topics import parse_topic

__all__ = ["IngestDoor"]


class IngestDoor:
    """The app's pipeline and SensorThings feed, used by one request at a time."""

    def __init__(self, settings: Settings, dynsec: DynSec | None) -> None:
        self._url = settings.database_url
        self._widths = tuple(settings.window_widths_s)
        self._dynsec = dynsec if settings.sta_mqtt_feed else None   # the feed needs the broker's dynamic security
        self._lock = threading.Lock()
        self._pipeline: Pipeline | None = None
        self._publisher: FeedPublisher | None = None
        self._feed: ObservationFeed | None = None
        self._features: FeatureIndex | None = None

    @property
    def pipeline(self) -> Pipeline | None:
        """The pipeline, once a commit opened it."""
        return self._pipeline

    def _open_feed(self) -> None:
        if self._publisher is None and self._dynsec is not None:
            self._publisher = FeedPublisher(self._dynsec)   # committed Observations on the broker
            self._features = FeatureIndex(self._url)
            self._feed = ObservationFeed(self._publisher.client, features=self._features)

    def publish(self, topic: str, entity: dict) -> None:
        """A created SensorThings entity on its topic, QoS 0, like the feed (nothing when the feed is off)."""
        with self._lock:
            self._open_feed()
            if self._publisher is not None:
                self._publisher.client.publish(topic, json.dumps(entity, separators=(",", ":")).encode(), qos=0,
                                               properties=FEED_PROPERTIES)

    def commit(self, messages: Sequence[Message]) -> CommitResult:
        """Commit through the pipeline; after a failure (the database went away: 503) the next
        commit starts on new connections."""
        with self._lock:
            if self._pipeline is None:
                self._open_feed()
                self._pipeline = Pipeline(self._url, widths_s=self._widths, on_commit=self._feed)
            # An HTTP writer expects the registry as it is now (a device just onboarded, disabled or
            # moved), not as the pipeline cached it up to a second or two ago: its publishers again.
            self._pipeline.resolver.recheck(_publishers(messages))
            try:
                return self._pipeline.commit(messages)
            except Exception:
                self._pipeline.close()
                self._pipeline = None
                raise

    def close(self) -> None:
        """Close the pipeline's connections and the feed (at app shutdown; a later commit reopens them)."""
        with self._lock:
            if self._pipeline is not None:
                self._pipeline.close()
                self._pipeline = None
            if self._publisher is not None:
                self._feed.close()
                self._features.close()
                self._publisher.close()
                self._publisher = self._feed = self._features = None


def _publishers(messages: Sequence[Message]) -> list[tuple[str, str]]:
    """(org, device) of each message's topic (a bad topic is the pipeline's dead letter)."""
    found = []
    for m in messages:
        try:
            topic = parse_topic(m.topic)
        except TopicError:
            continue
        found.append((topic.org, topic.device))
    return found
