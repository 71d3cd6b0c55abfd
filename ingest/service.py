"""The ingest worker: batches by size and age, commits, then acknowledges.

    MQTT thread ──bounded queue──▶ writer loop: collect a batch (messages or age)
                                   ├─ Pipeline.commit()  (one transaction)
                                   ├─ PUBACK the batch, in arrival order
                                   └─ publish each device's committed watermark (retained)

When the database is away the writer keeps the batch, acknowledges nothing,
retries with backoff and reconnects by itself; meanwhile the queue fills and the
broker holds the rest.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from ingest.mqtt import Delivery, IngestClient
from ingest.notify import start_dispatcher
from ingest.pipeline import CommitResult, Pipeline
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
    batch_max_messages: int = 2_000
    batch_max_age_ms: int = 250
    queue_max: int = 20_000
    widths_s: tuple[int, ...] = (60,)
    filters: tuple[str, ...] = INGEST_FILTERS  # narrower filters shard the lab by org
    retention: RetentionPolicy | None = None   # None: this worker leaves retention to others
    retention_interval_s: float = 3600.0
    notify_allow_loopback: bool = False  # alarm notifications (ingest/notify.py): the SSRF guard's exceptions
    notify_allow_private: bool = False


class IngestService:
    def __init__(self, options: IngestOptions) -> None:
        self.options = options
        self.client = IngestClient(options.mqtt_url, client_id=options.client_id, queue_max=options.queue_max,
                                   filters=options.filters)
        self.totals = {"packs_received": 0, "packs_stored": 0, "packs_dead_lettered": 0,
                       "packs_duplicate": 0, "readings_stored": 0, "batches": 0}
        self._pipeline: Pipeline | None = None

    def run(self, stop: threading.Event) -> None:
        self._pipeline = self._connect_database(stop)
        if self._pipeline is None:
            return
        self.client.start()
        start_dispatcher(self.options.database_url, stop, allow_loopback=self.options.notify_allow_loopback,
                         allow_private=self.options.notify_allow_private)
        logger.info("ingest running (batches of up to %d messages or %d ms)",
                    self.options.batch_max_messages, self.options.batch_max_age_ms)
        last_report = time.monotonic()
        next_retention = time.monotonic()
        try:
            while not stop.is_set():
                batch = self._collect(stop)
                if batch and not self._commit(batch, stop):
                    break
                if self.options.retention is not None and time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + self.options.retention_interval_s
                    try:
                        self._pipeline.apply_retention(self.options.retention)
                    except StorageError as exc:
                        logger.warning("retention failed, retrying later: %s", exc)
                if time.monotonic() - last_report >= 30:
                    last_report = time.monotonic()
                    logger.info("ingest totals: %s (queue %d, full waits %d)", self.totals,
                                self.client.queue.qsize(), self.client.queue_full_waits)
        finally:
            self.client.stop()
            self._pipeline.close()

    def _connect_database(self, stop: threading.Event) -> Pipeline | None:
        delay = 0.5
        while not stop.is_set():
            try:
                return Pipeline(self.options.database_url, widths_s=self.options.widths_s)
            except DatabaseUnavailable as exc:
                logger.warning("database unavailable, retrying in %.1f s: %s", delay, exc)
                stop.wait(delay)
                delay = min(delay * 2, 10.0)
        return None

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
        """Commit, then acknowledge; False when stopped before the batch could commit."""
        messages = [d.message for d in batch]
        delay = 0.5
        while True:
            try:
                result = self._pipeline.commit(messages)
                break
            except DatabaseUnavailable as exc:
                logger.warning("database unavailable; holding %d messages unacknowledged, retry in %.1f s: %s",
                               len(messages), delay, exc)
            except StorageError as exc:
                # Not a connectivity problem: a bug or a schema mismatch. Hold back and retry
                # rather than acknowledge data that was not stored.
                logger.error("commit failed (SQLSTATE %s); retrying in %.1f s: %s", exc.sqlstate, delay, exc)
            if stop.wait(delay):
                return False
            delay = min(delay * 2, 10.0)
            try:
                self._pipeline.reconnect()
            except StorageError as exc:
                logger.debug("reconnect failed: %s", exc)
        self.client.ack(batch)
        for (org, device), watermark in result.watermarks.items():
            self.client.publish_watermark(org, device, watermark)
        self._count(result)
        return True

    def _count(self, result: CommitResult) -> None:
        self.totals["batches"] += 1
        for name in ("packs_stored", "packs_dead_lettered", "packs_duplicate", "readings_stored"):
            self.totals[name] += getattr(result, name)
        self.totals["packs_received"] += result.packs_received - result.packs_duplicate
        for letter in result.dead_letters:
            logger.warning("dead letter from %s: %s (%s)", letter.topic, letter.reason, letter.detail)
