"""Four ingest workers on one shared subscription, SIGKILLed at random under load.

Four `python -m citylab ingest` processes share the topics ($share/<group>/lab/<org>/...),
each with its own client id and persistent session, supervised by the lab's own
`Supervisor` (each a component of its own, restarted on its own). Publishers keep a
ledger of every pack of 40 devices the broker acknowledged; the broker hands
consecutive packs of a device to different workers. Workers are SIGKILLed at arbitrary
moments of their work. At the end: every acknowledged reading is stored exactly once,
the aggregates the workers merged equal the raw table, and every device's committed
watermark is its last pack.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citylab.supervisor import RestartPolicy, Supervisor
from lab_probes import wait
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import up_topic
from raw_aggregates import assert_aggregates_equal_raw
from storage.registry import register_device

pytestmark = pytest.mark.slow

T0 = 1_790_000_000.0
WORKERS = 4
DEVICES = 40
PUBLISHERS = 2
READINGS = 5
KILLS = 8


class Publisher(threading.Thread):
    """Publishes pack after pack of its devices, in turn, at QoS 1; `acked[device]` counts
    the packs the broker acknowledged (seq 0 .. acked - 1)."""

    def __init__(self, port: int, org: str, devices: list[str]) -> None:
        super().__init__(daemon=True)
        self.org, self.devices = org, devices
        self.acked = dict.fromkeys(devices, 0)
        self.halt = threading.Event()
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def run(self) -> None:
        seq = 0
        while not self.halt.is_set():
            for device in self.devices:
                records = tuple(Record(f"{device}/temperature", float(seq * READINGS + i) / 4,
                                       T0 + seq * READINGS + i, "Cel") for i in range(READINGS))
                info = self.client.publish(up_topic(self.org, device), encode_pack(Pack("boot-1", seq, records)),
                                           qos=1)
                info.wait_for_publish(30)
                assert info.is_published(), f"pack {seq} of {device} not acknowledged"
                self.acked[device] = seq + 1
            seq += 1
            self.halt.wait(0.01)

    def close(self) -> None:
        self.halt.set()
        self.join(30)
        self.client.loop_stop()
        self.client.disconnect()


def _wait(supervisor: Supervisor, probe: Callable[[], object], timeout: float, what: str) -> None:
    """Wait for `probe`, letting the supervisor restart what died meanwhile."""
    wait(lambda: probe() or supervisor.poll(), timeout, what)


def _stored_packs(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM ingest_packs").fetchone()[0]


def test_four_workers_sigkilled_at_random_lose_and_duplicate_nothing(
        database: str, mqtt_broker, org: str, tmp_path: Path) -> None:
    devices = [f"d{i:02d}" for i in range(DEVICES)]
    with psycopg.connect(database) as conn:
        for device in devices:
            register_device(conn, org=org, device=device, kind="sensor")
    rng = random.Random(18)
    supervisor = Supervisor(log_dir=tmp_path, policy=RestartPolicy(backoff_initial_s=0.2, backoff_max_s=1.0,
                                                                   budget=KILLS + 1, window_s=300.0))
    env = {"CITYLAB_DATABASE_URL": database, "CITYLAB_MQTT_URL": mqtt_broker.url, "CITYLAB_INGEST_ORG": org,
           "CITYLAB_INGEST_SHARE_GROUP": f"g{org}", "CITYLAB_INGEST_BATCH_MAX_AGE_MS": "40",
           "CITYLAB_INGEST_BATCH_MAX_MESSAGES": "200"}
    workers = [supervisor.start(f"ingest-{k}", [sys.executable, "-m", "citylab", "ingest"],
                                env={**env, "CITYLAB_INGEST_CLIENT_ID": f"ingest-{org}-{k}"})
               for k in range(1, WORKERS + 1)]
    logs = [tmp_path / f"ingest-{k}.log" for k in range(1, WORKERS + 1)]
    publishers = [Publisher(mqtt_broker.port, org, devices[p::PUBLISHERS]) for p in range(PUBLISHERS)]
    try:
        _wait(supervisor, lambda: all(b"subscribed to $share/" in log.read_bytes() for log in logs if log.exists())
              and all(log.exists() for log in logs), 60, "every worker to subscribe")
        for publisher in publishers:
            publisher.start()
        with psycopg.connect(database, autocommit=True) as watch:
            for _ in range(KILLS):
                before = _stored_packs(watch)
                _wait(supervisor, lambda b=before: _stored_packs(watch) > b + 20, 60, "ingest to store more")
                time.sleep(rng.uniform(0.0, 0.3))  # an arbitrary moment of its work
                victim = rng.choice([w for w in workers if w.up])
                os.kill(victim.process.pid, signal.SIGKILL)
                victim.process.wait(10)
            _wait(supervisor, lambda: all(w.up for w in workers), 60, "every worker to be back")
            before = _stored_packs(watch)
            _wait(supervisor, lambda: _stored_packs(watch) > before + 50, 60, "ingest to store after the kills")
            for publisher in publishers:
                publisher.close()
            acked = {device: n for p in publishers for device, n in p.acked.items()}
            sent = sum(acked.values())
            _wait(supervisor, lambda: _stored_packs(watch) >= sent, 90, f"all {sent} packs to be stored")
            rows = watch.execute(
                "SELECT s.device, r.value, count(*) FROM readings r JOIN series s ON s.id = r.series_id"
                " GROUP BY 1, 2").fetchall()
            marks = dict(watch.execute("SELECT device, seq FROM ingest_watermarks WHERE boot_id = 'boot-1'")
                         .fetchall())
            counters = dict(watch.execute("SELECT name, value FROM ingest_counters").fetchall())
            assert_aggregates_equal_raw(watch, at_least=DEVICES)
    finally:
        for publisher in publishers:
            publisher.close()
        supervisor.stop(timeout=10)
    expected = {(device, (seq * READINGS + i) / 4) for device, n in acked.items() for seq in range(n)
                for i in range(READINGS)}
    stored = {(device, value) for device, value, _ in rows}
    lost = expected - stored
    duplicated = sum(n - 1 for *_, n in rows)
    assert (len(lost), duplicated) == (0, 0), f"lost {sorted(lost)[:10]}, duplicated {duplicated}"
    assert stored == expected
    assert counters["readings_stored"] == sent * READINGS
    assert counters["packs_received"] == counters["packs_stored"] == sent
    assert marks == {device: n - 1 for device, n in acked.items()}  # gap-free, and at the end
    assert sum(w.restarts for w in workers) == KILLS  # each restarted on its own
