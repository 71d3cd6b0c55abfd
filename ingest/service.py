"""The ingest worker: batches by size and age, commits, then acknowledges.

    MQTT thread ──bounded queue──▶ writer loop: collect a batch (messages or age)
                                   ├─ Pipeline.commit()  (one transaction)
                                   ├─ PUBACK the batch, in arrival order
                                   └─ publish each device's committed watermark (retained)

When the database is away the writer keeps the batch, acknowledges nothing,
retries with backoff and reconnects by itself; meanwhile the queue fills up to the
receive maximum and the broker holds the rest. A batch the database refuses for
its data is split by the pipeline and each committed piece is acknowledged at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from ingest.metrics import IngestMetrics
from ingest.mqtt import Delivery, IngestClient
from ingest.observation_feed import FeatureIndex, FeedOptions, ObservationFeed
from ingest.notify import start_dispatcher
from ingest.pipeline import CommitResult, Pipeline
from ingest.tts_client import SubscribedServers
from ingest.validate import PackLimits
from protocol.topics import INGEST_FILTERS
from storage.errors import DatabaseUnavailable, StorageError
from storage.retention import RetentionPolicy

__all__ = ["IngestOptions", "IngestService"]

logger = logging.getLogger("citylab.ingest")


@dataclass(frozen=True, slots=True)
class IngestOptions:
    database_url: str
    mqtt_url: str
    client_id: str = "citylab-ingest"
    # publish each committed reading on the SensorThings MQTT topics, QoS 0, from a thread of its
    # own that drops (and counts) what ingest has no time for (ingest.observation_feed)
    sta_feed: bool = True
    sta_feed_options: FeedOptions = FeedOptions()
    batch_max_messages: int = 2_000
    batch_max_age_ms: int = 250
    queue_max: int = 20_000
    widths_s: tuple[int, ...] = (60,)
    filters: tuple[str, ...] = INGEST_FILTERS  # narrower filters shard the lab by org
    retention: RetentionPolicy | None = None   # None: this worker leaves retention to others
    retention_interval_s: float = 3600.0
    limits: PackLimits = PackLimits()          # time window and days per pack (ingest.validate)
    metrics_port: int | None = None            # Prometheus /metrics; 0: a free port; None: off
    metrics_host: str = "127.0.0.1"
    notify_allow_loopback: bool = False  # alarm notifications (ingest/notify.py): the SSRF guard's exceptions
    notify_allow_private: bool = False
    notify_interval_s: float = 1.0       # how often due notifications are sent
    alarm_tick_s: float = 5.0            # alert rules' timer: silences, quiet anomalies, device status
    # connect to the MQTT servers of subscribe-mode integrations (The Things Stack; ingest.tts_client)
    subscribe_servers: bool = False
    # one of several workers on a shared subscription: context flags and silences are checked
    # against the database (ingest.context_flags)
    shared: bool = False


class IngestService:
    def __init__(self, options: IngestOptions) -> None:
        self.options = options
        self.client = IngestClient(options.mqtt_url, client_id=options.client_id, queue_max=options.queue_max,
                                   filters=options.filters)
        self.totals = {"packs_received": 0, "packs_stored": 0, "packs_dead_lettered": 0,
                       "packs_duplicate": 0, "readings_stored": 0, "batches": 0}
        self._pipeline: Pipeline | None = None
        self._committing: list[Delivery] = []  # the batch in hand, not yet acknowledged
        self._features = FeatureIndex(options.database_url) if options.sta_feed else None
        self.feed = (ObservationFeed(self.client.paho, features=self._features, options=options.sta_feed_options)
                     if options.sta_feed else None)
        self.metrics = IngestMetrics(lag_s=self._lag_s, queue_depth=self.client.queue.qsize,
                                     committing=lambda: len(self._committing),
                                     connected=self.client.connected.is_set,
                                     refused=self.refused_subscriptions, feed=self.feed)
        self.client.on_delivery = self.metrics.received.inc
        self.servers = SubscribedServers(options.database_url, self.client.queue,
                                         on_delivery=self.metrics.received.inc) if options.subscribe_servers else None

    def refused_subscriptions(self) -> dict[tuple[str, str], str]:
        """(server, filter) -> reason of each refused subscription: the broker's, and those of the
        network servers ingest subscribes to."""
        refused = {("broker", f): reason for f, reason in self.client.refused_subscriptions.items()}
        if self.servers is not None:
            refused.update(self.servers.refused())
        return refused

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set. Nothing a message holds ends this loop."""
        if self.options.metrics_port is not None:
            self.metrics.serve(self.options.metrics_port, self.options.metrics_host)
        try:
            self._pipeline = self._connect_database(stop)
            if self._pipeline is None:
                return
            self.client.start()
            if self.servers is not None:
                self.servers.start()
            start_dispatcher(self.options.database_url, stop, allow_loopback=self.options.notify_allow_loopback,
                             allow_private=self.options.notify_allow_private, publish=self.client.publish_retained,
                             interval_s=self.options.notify_interval_s)
            logger.info("ingest running (batches of up to %d messages or %d ms, receive maximum %d)",
                        self.options.batch_max_messages, self.options.batch_max_age_ms, self.client.receive_maximum)
            try:
                self._loop(stop)
            finally:
                if self.servers is not None:
                    self.servers.stop()
                self.client.stop()
                self._pipeline.close()
        finally:
            if self.feed is not None:
                self.feed.close()
                self._features.close()
            self.metrics.close()

    def _loop(self, stop: threading.Event) -> None:
        last_report = time.monotonic()
        next_retention = next_tick = time.monotonic()
        while not stop.is_set():
            batch = self._collect(stop)
            if batch and not self._commit(batch, stop):
                break
            if time.monotonic() >= next_tick:  # a dead sensor raises its alarm without a late reading
                next_tick = time.monotonic() + self.options.alarm_tick_s
                try:
                    self._pipeline.check_alarms()
                except Exception as exc:  # the timer waits for its next turn; ingest goes on
                    logger.warning("alarm timer failed, retrying later: %s", exc)
            if self.options.retention is not None and time.monotonic() >= next_retention:
                next_retention = time.monotonic() + self.options.retention_interval_s
                try:
                    self._pipeline.apply_retention(self.options.retention)
                except Exception as exc:  # retention waits for its next turn; ingest goes on
                    logger.warning("retention failed, retrying later: %s", exc)
            if time.monotonic() - last_report >= 30:
                last_report = time.monotonic()
                logger.info("ingest totals: %s (queue %d, full waits %d)", self.totals,
                            self.client.queue.qsize(), self.client.queue_full_waits)

    def _connect_database(self, stop: threading.Event) -> Pipeline | None:
        delay = 0.5
        while not stop.is_set():
            try:
                return Pipeline(self.options.database_url, widths_s=self.options.widths_s, limits=self.options.limits,
                                on_commit=self.feed, shared=self.options.shared)
            except StorageError as exc:
                logger.warning("database not ready, retrying in %.1f s: %s", delay, exc)
                stop.wait(delay)
                delay = min(delay * 2, 10.0)
        return None

    def _lag_s(self) -> float:
        """Age of the oldest message received and not yet committed (0 when there is none)."""
        oldest = self._committing[0].message.received_us if self._committing else None
        if oldest is None:
            with self.client.queue.mutex:
                queued = self.client.queue.queue
                oldest = queued[0].message.received_us if queued else None
        return 0.0 if oldest is None else max(0.0, time.time() - oldest / 1e6)

    def _collect(self, stop: threading.Event) -> list[Delivery]:
        try:
            first = self.client.queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.options.batch_max_age_ms / 1000
        while len(batch) < self.options.batch_max_messages:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.client.queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _commit(self, batch: list[Delivery], stop: threading.Event) -> bool:
        """Commit, acknowledging each committed piece; False when stopped before all of it committed.

        A lost database connection holds the rest unacknowledged and retries it with
        backoff; a data error never reaches here (the pipeline dead-letters the culprit).
        """
        self._committing = batch
        delay = 0.5
        try:
            while self._committing:
                try:
                    self._commit_pieces()
                    break
                except DatabaseUnavailable as exc:
                    logger.warning("database unavailable; holding %d messages unacknowledged, retry in %.1f s: %s",
                                   len(self._committing), delay, exc)
                except Exception:  # a bug: keep the messages, keep running, say so loudly
                    logger.exception("commit failed; holding %d messages unacknowledged, retry in %.1f s",
                                     len(self._committing), delay)
                if stop.wait(delay):
                    return False
                delay = min(delay * 2, 10.0)
                try:
                    self._pipeline.reconnect()
                except StorageError as exc:
                    logger.debug("reconnect failed: %s", exc)
            return True
        finally:
            self._committing = []

    def _commit_pieces(self) -> None:
        messages = [d.message for d in self._committing]
        done = 0
        started = time.perf_counter()
        try:
            for end, result in self._pipeline.commit_pieces(messages):
                self.metrics.commit_seconds.observe(time.perf_counter() - started)
                self.client.ack(self._committing[done:end])
                done = end
                try:
                    for (org, device), watermark in result.watermarks.items():
                        self.client.publish_watermark(org, device, watermark)
                    self._count(result)
                except Exception:  # committed and acknowledged already; a later watermark covers it
                    logger.exception("publishing the watermarks of a committed piece failed")
                started = time.perf_counter()
        finally:
            self._committing = self._committing[done:]

    def _count(self, result: CommitResult) -> None:
        self.totals["batches"] += 1
        for name in ("packs_stored", "packs_dead_lettered", "packs_duplicate", "readings_stored"):
            self.totals[name] += getattr(result, name)
        self.totals["packs_received"] += result.packs_received - result.packs_duplicate
        self.metrics.stored.inc(result.packs_stored)
        self.metrics.duplicate.inc(result.packs_duplicate)
        self.metrics.readings.inc(result.readings_stored)
        for letter in result.dead_letters:
            self.metrics.dead_lettered.labels(letter.reason).inc()
            logger.warning("dead letter from %s: %s (%s)", letter.topic, letter.reason, letter.detail[:500])
