"""The gateway agent: sources -> packs -> durable queue -> MQTT, pruned by the platform.

Threads: one per source (reading ports), one MQTT network thread, and the agent
thread (:meth:`Agent.run`) which alone touches the SQLite queue. The agent thread
loops: take readings from the bounded reading queue, seal packs by size or age and
store them (one transaction per batch) *before* publishing, apply committed
watermarks, republish after a reconnect or a commit timeout, publish the retained
status every ``status_interval_s``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import threading
import time
from pathlib import Path

from edge._mqtt import MqttLink, Will
from edge.config import EdgeConfig
from edge.errors import EdgeError
from edge.publisher import PackBuilder, Publisher
from edge.queue import PackQueue
from edge.sources import LoraSource, SerialSource, Source, SourceStats
from protocol.errors import ProtocolError
from protocol.senml import Record
from protocol.topics import committed_topic, decode_watermark, status_topic, up_topic

__all__ = ["Agent", "new_boot_id"]

log = logging.getLogger("edge.agent")

READING_QUEUE_SIZE = 10_000  # lines; ~10 s of a busy gateway


def new_boot_id() -> str:
    """A fresh random boot id (64 bits, hex)."""
    return secrets.token_hex(8)


class Agent:
    """One gateway: build with a config, then :meth:`run` until :meth:`stop`."""

    def __init__(self, config: EdgeConfig, *, boot_id: str | None = None) -> None:
        self.config = config
        self.boot_id = boot_id or new_boot_id()
        gw = config.gateway
        self.up_topic = up_topic(gw.org, gw.device)
        self.status_topic = status_topic(gw.org, gw.device)
        self.committed_topic = committed_topic(gw.org, gw.device)
        self._stop = threading.Event()
        self._started = time.time()
        self.readings: queue.Queue[tuple[Record, ...]] = queue.Queue(maxsize=READING_QUEUE_SIZE)
        self.stats = SourceStats()
        self.store = PackQueue(config.buffer.path, boot_id=self.boot_id, max_packs=config.buffer.max_packs)
        self.builder = PackBuilder(
            boot_id=self.boot_id,
            content_type=config.content_type,
            max_readings=config.buffer.pack_max_readings,
            max_age_s=config.buffer.pack_max_age_ms / 1000.0,
        )
        self.link = MqttLink(
            config.mqtt,
            # onboarded logins are bound to their client id, which is the username
            client_id=config.mqtt.client_id or config.mqtt.username or f"edge-{gw.org}-{gw.device}",
            will=Will(self.status_topic, json.dumps({"state": "offline"}).encode()),
            subscribe=self.committed_topic,
        )
        self.publisher = Publisher(
            self.store,
            self._publish_pack,
            rate_per_s=config.buffer.drain_rate_packs_per_s,
            max_inflight=config.mqtt.max_inflight,
            commit_timeout_s=config.mqtt.commit_timeout_s,
        )
        self.sources: list[Source] = [SerialSource(c, self.readings, self.stats) for c in config.serial]
        self.sources += [LoraSource(c, self.readings, self.stats) for c in config.lora]
        self.bad_watermarks = 0
        self.pruned_packs = 0

    # -- lifecycle ---------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to finish (safe from signal handlers and other threads)."""
        self._stop.set()

    def run(self) -> None:
        """Run until :meth:`stop`; then flush, say offline, disconnect."""
        self._write_boot_id()
        log.info(
            "edge %s/%s boot %s: %d source(s), buffer %s (%d packs queued), broker %s",
            self.config.gateway.org,
            self.config.gateway.device,
            self.boot_id,
            len(self.sources),
            self.store.path,
            self.store.depth,
            self.config.mqtt.url,
        )
        self.link.start()
        for s in self.sources:
            s.start()
        generation = 0
        next_status = 0.0
        try:
            while not self._stop.is_set():
                self._take_readings()
                self._apply_watermarks()
                if self.link.generation != generation:
                    generation = self.link.generation
                    self.publisher.reset()
                    next_status = 0.0
                    log.info("(re)connected: republishing %d queued pack(s)", self.store.depth)
                if self.link.connected:
                    self.publisher.step()
                    if time.monotonic() >= next_status:
                        self._publish_status("online")
                        next_status = time.monotonic() + self.config.gateway.status_interval_s
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for s in self.sources:
            s.stop()
        for s in self.sources:
            s.join(2.0)
        self._take_readings(block=False)  # what the sources handed on before stopping
        if len(self.builder):
            self.store.put_many([self.builder.seal()])
        if self.link.connected:
            info = self._publish_status("offline")
            if info is not None:
                try:
                    info.wait_for_publish(timeout=2.0)  # type: ignore[attr-defined]
                except (RuntimeError, ValueError):
                    pass
        self.link.close()
        log.info("stopped; %d pack(s) stay queued for the next start", self.store.depth)
        self.store.close()

    # -- one loop step -----------------------------------------------------------
    def _take_readings(self, *, block: bool = True) -> None:
        """Move readings into packs; store sealed packs in one transaction."""
        deadline = self.builder.deadline()
        timeout = 0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic()))
        sealed: list[tuple[bytes, int, int]] = []
        try:
            first = self.readings.get(timeout=timeout) if block and timeout > 0 else self.readings.get_nowait()
        except queue.Empty:
            first = None
        if first is not None:
            sealed += self.builder.add(first)
            for _ in range(READING_QUEUE_SIZE):
                try:
                    sealed += self.builder.add(self.readings.get_nowait())
                except queue.Empty:
                    break
        if self.builder.due():
            sealed.append(self.builder.seal())
        if sealed:
            self.store.put_many(sealed)

    def _apply_watermarks(self) -> None:
        while True:
            try:
                payload = self.link.watermarks.get_nowait()
            except queue.Empty:
                return
            try:
                mark = decode_watermark(payload)
            except ProtocolError as exc:
                self.bad_watermarks += 1
                log.warning("ignoring bad watermark on %s: %s", self.committed_topic, exc)
                continue
            ids = self.store.prune(mark.boot_id, mark.seq, mark.ranges)
            if ids:
                self.pruned_packs += len(ids)
                self.publisher.committed(ids)
                log.debug("watermark %s/%d pruned %d pack(s)", mark.boot_id, mark.seq, len(ids))

    def _publish_pack(self, body: bytes) -> object | None:
        return self.link.publish(self.up_topic, body, qos=1, content_type=self.config.content_type)

    def status(self, state: str) -> dict[str, object]:
        snap = self.stats.snapshot()
        return {
            "state": state,
            "boot_id": self.boot_id,
            "time": round(time.time(), 3),
            "uptime_s": round(time.time() - self._started, 1),
            "buffer_depth": self.store.depth,
            "dropped": self.store.dropped,
            "dropped_readings": self.store.dropped_readings,
            "bad_lines": snap["bad_lines"],
            "readings_read": snap["readings_read"],
            "readings_dropped": snap["readings_dropped"],
            "lines_read": snap["lines_read"],
            "packs_sealed": self.builder.next_seq,
            "packs_published": self.publisher.published,
            "packs_republished": self.publisher.republished,
            "packs_pruned": self.pruned_packs,
            "bad_watermarks": self.bad_watermarks,
            "watermarks_dropped": self.link.watermarks_dropped,
            "sources": snap["sources"],
            "port_losses": snap["port_losses"],
        }

    def _publish_status(self, state: str) -> object | None:
        payload = json.dumps(self.status(state), separators=(",", ":")).encode()
        return self.link.publish(self.status_topic, payload, qos=1, retain=True, content_type="application/json")

    def _write_boot_id(self) -> None:
        path = self.config.gateway.boot_id_file
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(f"{path}.tmp")
            tmp.write_text(self.boot_id + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            raise EdgeError(f"cannot write boot id file {path}: {exc}") from exc
