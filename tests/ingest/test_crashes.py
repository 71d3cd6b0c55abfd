"""Ingest SIGKILLed ten times while packs keep coming: nothing lost, nothing stored twice.

A publisher keeps a ledger of every pack the broker acknowledged while the ingest
process (`python -m citylab ingest`, its persistent session on the broker) is killed
at arbitrary moments: while it decodes, writes, waits for its commit or acknowledges.
Whatever the broker redelivers after each restart is de-duplicated by the pack claims.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from lab_probes import wait
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import up_topic
from storage.registry import register_device

pytestmark = pytest.mark.slow

T0 = 1_790_000_000.0
READINGS = 5
KILLS = 10


class LedgerPublisher(threading.Thread):
    """Publishes numbered packs at QoS 1 until stopped; the ledger holds those the broker acknowledged."""

    def __init__(self, port: int, org: str) -> None:
        super().__init__(daemon=True)
        self.org = org
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.acked = 0
        self.halt = threading.Event()

    def run(self) -> None:
        seq = 0
        while not self.halt.is_set():
            records = tuple(Record("air-1/temperature", float(seq * READINGS + i), T0 + seq + i / 10, "Cel")
                            for i in range(READINGS))
            info = self.client.publish(up_topic(self.org, "gw-1"), encode_pack(Pack("boot-1", seq, records)), qos=1)
            info.wait_for_publish(10)
            self.acked = seq + 1
            seq += 1
            self.halt.wait(0.004)

    def close(self) -> None:
        self.halt.set()
        self.join(10)
        self.client.loop_stop()
        self.client.disconnect()


def _start_ingest(database: str, mqtt_url: str, org: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "CITYLAB_DATABASE_URL": database, "CITYLAB_MQTT_URL": mqtt_url,
           "CITYLAB_INGEST_CLIENT_ID": f"ingest-{org}", "CITYLAB_INGEST_ORG": org,
           "CITYLAB_INGEST_BATCH_MAX_AGE_MS": "40", "CITYLAB_INGEST_BATCH_MAX_MESSAGES": "200"}
    start = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "citylab", "ingest"], env=env, stdout=out, stderr=out)
    wait(lambda: b"subscribed to" in log.read_bytes()[start:] or proc.poll() is not None, 60,
                "ingest to subscribe")
    assert proc.poll() is None, log.read_text()[-2000:]
    return proc


def _stored_packs(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM ingest_packs").fetchone()[0]


def test_ingest_sigkilled_ten_times_under_load_loses_and_duplicates_nothing(
        database: str, mqtt_broker, org: str, tmp_path: Path) -> None:
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="gw-1", kind="gateway")
        register_device(conn, org=org, device="air-1", gateway="gw-1", kind="serial")
    log = tmp_path / "ingest.log"
    rng = random.Random(10)
    publisher = LedgerPublisher(mqtt_broker.port, org)
    ingest = _start_ingest(database, mqtt_broker.url, org, log)
    publisher.start()
    try:
        with psycopg.connect(database, autocommit=True) as watch:
            for _ in range(KILLS):
                before = _stored_packs(watch)
                wait(lambda: _stored_packs(watch) > before, 30, "ingest to store something new")
                time.sleep(rng.uniform(0.0, 0.3))  # an arbitrary moment of its work
                ingest.send_signal(signal.SIGKILL)
                ingest.wait(10)
                ingest = _start_ingest(database, mqtt_broker.url, org, log)
            publisher.close()
            sent = publisher.acked
            wait(lambda: _stored_packs(watch) >= sent, 60, f"all {sent} packs to be stored")
            rows = watch.execute("SELECT value, count(*) FROM readings GROUP BY value").fetchall()
            counters = dict(watch.execute("SELECT name, value FROM ingest_counters").fetchall())
    finally:
        publisher.close()
        ingest.kill()
        ingest.wait(10)
    expected = {float(v) for v in range(sent * READINGS)}
    stored = {v for v, _ in rows}
    lost = expected - stored
    duplicated = sum(n - 1 for _, n in rows)
    assert (len(lost), duplicated) == (0, 0), f"lost {sorted(lost)[:10]}, duplicated {duplicated}"
    assert stored == expected  # nothing stored that was not published either
    assert counters["readings_stored"] == sent * READINGS
    assert counters["packs_received"] == counters["packs_stored"] + counters["packs_dead_lettered"] == sent
    assert log.read_text().count("subscribed to") == KILLS + 1
