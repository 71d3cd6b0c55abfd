"""Helpers of the edge tests: an MQTT collector on the test's own org, the agent as a process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from lab_probes import wait


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    content_type: str | None


@dataclass
class Collector:
    """A paho client subscribed to ``lab/{org}/#`` that records every message."""

    client: paho.Client
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, topic: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        return wait(predicate, timeout, what)

    def last_status(self, topic: str) -> dict[str, Any] | None:
        msgs = self.on(topic)
        return json.loads(msgs[-1].payload) if msgs else None

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)


@pytest.fixture
def collector(mqtt_broker: Any, org: str) -> Iterator[Collector]:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5)
    col = Collector(client)
    subscribed = threading.Event()

    def on_message(c: paho.Client, u: object, m: paho.MQTTMessage) -> None:
        ct = getattr(m.properties, "ContentType", None) if m.properties else None
        with col.lock:
            col.messages.append(Message(m.topic, bytes(m.payload), bool(m.retain), ct))

    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(mqtt_broker.host, mqtt_broker.port)
    client.loop_start()
    client.subscribe(f"lab/{org}/#", qos=1)
    assert subscribed.wait(5)
    yield col
    client.loop_stop()
    client.disconnect()


@dataclass
class AgentProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"agent did not stop on SIGTERM; log:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[[Path], AgentProcess]]:
    started: list[AgentProcess] = []

    def start(config: Path) -> AgentProcess:
        log_path = tmp_path / f"agent-{len(started)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edge", "--config", str(config), "--log-level", "DEBUG"],
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        agent = AgentProcess(proc, log_path)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        if agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait()


# --------------------------------------------------------------------------- the real platform


@pytest.fixture
def private_broker() -> Iterator[Any]:
    """A Mosquitto of the test's own, to kill or stop (``.kill() .stop() .start()``)."""
    from citylab.embedded import start_mosquitto

    root = Path(tempfile.mkdtemp(prefix="citylab-edge-broker-"))
    root.chmod(0o755)  # as root the broker runs as the mosquitto user
    server = start_mosquitto(root)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def start_platform(database: str, org: str) -> Iterator[Callable[..., Platform]]:
    from ingest import IngestOptions, IngestService
    from protocol.topics import ingest_filters
    from storage.registry import register_device

    from edge_lab import Platform

    started: list[Platform] = []

    def start(mqtt_url: str, *, gateway: str, sensors: list[str]) -> Platform:
        with psycopg.connect(database) as conn:
            register_device(conn, org=org, device=gateway, kind="gateway")
            for sensor in sensors:
                register_device(conn, org=org, device=sensor, gateway=gateway, kind="serial")
        service = IngestService(IngestOptions(
            database_url=database, mqtt_url=mqtt_url, client_id=f"ingest-{org}",
            batch_max_age_ms=50, filters=ingest_filters(org),
        ))
        stop = threading.Event()
        thread = threading.Thread(target=service.run, args=(stop,), name="ingest", daemon=True)
        thread.start()
        platform = Platform(database, service, thread, stop)
        started.append(platform)
        return platform

    yield start
    for platform in started:
        platform.stop_event.set()
        platform.thread.join(15)
