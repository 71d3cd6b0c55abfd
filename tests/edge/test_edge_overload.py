"""Overload: many devices publishing, the database stalled for 30 s by a held lock, the broker at its limit.

Real parts: 16 edge agents (the real `edge.Agent`: SQLite queue, publisher, MQTT link,
in threads of this process, fed readings by the test), one edge agent as a process
reading simulated sensors on ptys with the firmware's ledger, a Mosquitto of its own
whose per-session queue is cut down to 300 messages so that it really drops for
ingest, ingest in a thread with a receive maximum of 500, and PostgreSQL, whose
`ingest_counters` table another connection holds locked for 30 s.

What must hold: while the database is stalled ingest acknowledges nothing and the
broker drops what exceeds its limit; a dropped pack is a hole no watermark passes,
so every edge keeps it and sends it again; in the end every reading of every ledger
is in the database exactly once.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from edge_lab import ledger_lines, queued_packs
from lab_probes import wait

from edge import Agent
from edge.config import BufferConfig, EdgeConfig, GatewayConfig, MqttConfig
from firmware_sim import Ledger, SerialSensor
from ingest import IngestOptions, IngestService
from protocol.senml import Record
from protocol.topics import ingest_filters
from storage.registry import register_device

pytestmark = pytest.mark.slow

LOAD_DEVICES = 16
STALL_S = 30.0
GW = "gw-real"
SENSORS = ["air-001", "noise-001"]
T0 = 1_790_000_000.0


class LoadDevices:
    """In-process edge agents, each fed one line of 5 readings every 50 ms; the ledger is what was fed."""

    def __init__(self, tmp_path: Path, org: str, port: int) -> None:
        self.configs = [EdgeConfig(
            GatewayConfig(org=org, device=f"load-{d:02d}", status_interval_s=2.0),
            MqttConfig(host="127.0.0.1", port=port, commit_timeout_s=3.0, max_inflight=50),
            BufferConfig(path=tmp_path / f"load-{d:02d}.sqlite", pack_max_readings=5, pack_max_age_ms=200,
                         drain_rate_packs_per_s=200.0),
        ) for d in range(LOAD_DEVICES)]
        self.agents: list[Agent] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(c,), name=f"agent-{i}", daemon=True)
                        for i, c in enumerate(self.configs)]
        self.ledger: dict[str, list[tuple[float, float]]] = {c.gateway.device: [] for c in self.configs}
        self.halt = threading.Event()
        self.feeder = threading.Thread(target=self._feed, name="feeder", daemon=True)

    def _run(self, config: EdgeConfig) -> None:
        agent = Agent(config)  # in its own thread: the SQLite queue belongs to the thread that opened it
        with self._lock:
            self.agents.append(agent)
        agent.run()

    def start(self) -> None:
        for t in self.threads:
            t.start()
        wait(lambda: len(self.agents) == LOAD_DEVICES, 20, "the load agents to start")
        self.feeder.start()

    def _feed(self) -> None:
        n = 0
        while not self.halt.wait(0.05):
            for agent in self.agents:
                device = agent.config.gateway.device
                line = tuple(Record(f"{device}/power", float(n * 5 + i), T0 + n * 0.05 + i * 1e-3, "W")
                             for i in range(5))
                agent.readings.put(line)
                self.ledger[device] += [(r.time, r.value) for r in line]
            n += 1

    def stop_feeding(self) -> None:
        self.halt.set()
        self.feeder.join(5)

    def drained(self) -> bool:
        return all(a.readings.empty() and not len(a.builder) and a.store.depth == 0 for a in self.agents)

    def republished(self) -> int:
        return sum(a.publisher.republished for a in self.agents)

    def close(self) -> None:
        self.stop_feeding()
        for a in self.agents:
            a.stop()
        for t in self.threads:
            t.join(10)


def _rig(tmp_path: Path, org: str, url: str) -> tuple[Ledger, list[SerialSensor], Path]:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    sensors = [SerialSensor(sid, kind=sid.split("-")[0], period_s=0.05, seed=3, link=tmp_path / "tty" / sid,
                            ledger=ledger) for sid in SENSORS]
    lines = ["[gateway]", f'org = "{org}"', f'device = "{GW}"', "status_interval_s = 1.0",
             "[mqtt]", f'url = "{url}"', "commit_timeout_s = 3",
             "[buffer]", 'path = "real.sqlite"', "pack_max_readings = 20", "pack_max_age_ms = 200",
             "drain_rate_packs_per_s = 200"]
    for s in sensors:
        lines += ["[[serial]]", f'path = "{s.path}"']
    config = tmp_path / "edge.toml"
    config.write_text("\n".join(lines) + "\n")
    return ledger, sensors, config


def _stored(database: str, devices: list[str]) -> dict[str, list[tuple[float, float]]]:
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT s.device, extract(epoch FROM r.time)::float8, r.value FROM readings r"
            " JOIN series s ON s.id = r.series_id WHERE s.device = ANY(%s)", (devices,)).fetchall()
    out: dict[str, list[tuple[float, float]]] = {d: [] for d in devices}
    for device, t, v in rows:
        out[device].append((round(t, 6), v))
    return out


def test_overload_with_the_database_stalled_and_the_broker_dropping_loses_nothing(
        tmp_path: Path, org: str, database: str, private_broker: Any, start_agent: Any) -> None:
    # the broker's session queue cut down so that 30 s of stall overflow it for sure
    conf = private_broker.root / "mosquitto.conf"
    conf.write_text(conf.read_text() + "max_queued_messages 300\n")
    private_broker.stop()
    private_broker.start()

    load_names = [f"load-{d:02d}" for d in range(LOAD_DEVICES)]
    with psycopg.connect(database) as conn:
        for name in load_names:
            register_device(conn, org=org, device=name, kind="gateway")
        register_device(conn, org=org, device=GW, kind="gateway")
        for sensor in SENSORS:
            register_device(conn, org=org, device=sensor, gateway=GW, kind="serial")
    service = IngestService(IngestOptions(
        database_url=database, mqtt_url=private_broker.url, client_id=f"ingest-{org}", batch_max_age_ms=50,
        filters=ingest_filters(org), queue_max=500))
    stop = threading.Event()
    ingest = threading.Thread(target=service.run, args=(stop,), name="ingest", daemon=True)
    ingest.start()
    assert service.client.connected.wait(30)
    assert service.client.receive_maximum == 500

    ledger, sensors, config = _rig(tmp_path, org, private_broker.url)
    agent = start_agent(config)
    load = LoadDevices(tmp_path, org, private_broker.port)
    blocker = psycopg.connect(database)
    try:
        wait(lambda: agent.log().count("opened ") >= len(SENSORS) and "connected to" in agent.log(), 20,
             "the real agent to open its ports and connect")
        for s in sensors:
            s.start()
        load.start()
        wait(lambda: service.totals["packs_stored"] > 100, 30, "ingest to store the first packs")

        blocker.execute("LOCK TABLE ingest_counters IN ACCESS EXCLUSIVE MODE")
        with psycopg.connect(database, autocommit=True) as watch:
            wait(lambda: watch.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE NOT l.granted AND a.application_name = 'citylab-ingest'").fetchone()[0] > 0,
                30, "ingest to wait for the lock")
        stored_before = service.totals["packs_stored"]
        time.sleep(STALL_S)  # the scenario: the database stalled this long
        assert service.totals["packs_stored"] == stored_before, "nothing commits while the lock is held"
        held = service.metrics.registry.get_sample_value("citylab_ingest_queue_depth", {"queue": "committing"})
        assert held and held > 0
        assert service.metrics.registry.get_sample_value("citylab_ingest_lag_seconds") > 0
        assert service.client.connected.is_set(), "ingest kept its session through the stall"
        blocker.rollback()

        log = (private_broker.root / "mosquitto.log").read_text(errors="replace")
        assert f"Outgoing messages are being dropped for client ingest-{org}" in log, "the broker really dropped"

        load.stop_feeding()
        for s in sensors:
            s.stop()
        wait(load.drained, 120, "every load device's packs to be committed and pruned")
        wait(lambda: not queued_packs(tmp_path / "real.sqlite"), 120, "the real agent's buffer to be pruned")
        assert load.republished() > 0, "the dropped packs were sent again"
        # the SensorThings feed ran all along (on by default), off ingest's critical path
        assert service.feed is not None and service.feed.published > 0

        got = _stored(database, load_names)
        for device, fed in load.ledger.items():
            want = sorted((round(t, 6), v) for t, v in fed)
            assert sorted(got[device]) == want, (
                f"{device}: {len(set(want) - set(got[device]))} lost, {len(got[device]) - len(set(got[device]))}"
                " duplicated")
        want_lines = ledger_lines(ledger.path)
        from edge_lab import Platform
        platform = Platform(database, service, ingest, stop)
        assert platform.lines(SENSORS) == want_lines
        with psycopg.connect(database) as conn:
            counters = dict(conn.execute("SELECT name, value FROM ingest_counters").fetchall())
        assert counters["packs_dead_lettered"] == 0
        assert counters["packs_received"] == counters["packs_stored"]
        assert agent.stop() == 0, agent.log()
    finally:
        blocker.close()
        load.close()
        for s in sensors:
            s.close()
        ledger.close()
        stop.set()
        ingest.join(15)
