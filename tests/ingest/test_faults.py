"""Faults, counted against a ledger of everything published: nothing lost, nothing twice.

(a) the ingest process is SIGKILLed between receive and commit, then restarted;
(b) PostgreSQL is stopped for a while under load and started again;
the case of the same packs published twice is in test_service.py.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citylab.embedded import start_postgres
from ingest import IngestOptions, IngestService
from lab_probes import wait
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import ingest_filters, up_topic
from storage.migrate import migrate
from storage.registry import register_device

pytestmark = pytest.mark.slow

T0 = 1_790_000_000.0
READINGS_PER_PACK = 10


class Publisher:
    """Publishes numbered packs at QoS 1 and keeps the ledger of what the broker accepted."""

    def __init__(self, port: int, org: str, device: str = "gw-1") -> None:
        self.org, self.device = org, device
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.ledger: list[tuple[int, float, float]] = []  # (seq, time, value) of every reading
        self.seq = 0

    def publish(self, packs: int) -> None:
        for _ in range(packs):
            seq = self.seq
            records = tuple(Record("air-1/temperature", float(seq * 100 + i), T0 + seq + i / 100, "Cel")
                            for i in range(READINGS_PER_PACK))
            info = self.client.publish(up_topic(self.org, self.device),
                                       encode_pack(Pack("boot-1", seq, records)), qos=1)
            info.wait_for_publish(10)
            self.ledger += [(seq, r.time, r.value) for r in records]
            self.seq += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _register(url: str, org: str) -> None:
    with psycopg.connect(url) as conn:
        register_device(conn, org=org, device="gw-1", kind="gateway")
        register_device(conn, org=org, device="air-1", gateway="gw-1", kind="serial")


def _stored(url: str) -> list[tuple[float, float]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT extract(epoch FROM time)::float8, value FROM readings ORDER BY 1, 2").fetchall()


def _check_ledger(url: str, ledger: list[tuple[int, float, float]]) -> None:
    stored = _stored(url)
    want = sorted((t, v) for _, t, v in ledger)
    missing = sorted(set(want) - set(stored))
    duplicated = len(stored) - len(set(stored))
    assert (len(missing), duplicated) == (0, 0), f"missing {missing[:5]}..., duplicated {duplicated}"
    assert stored == want
    with psycopg.connect(url) as conn:
        counters = dict(conn.execute("SELECT name, value FROM ingest_counters").fetchall())
    assert counters["readings_stored"] == len(want)
    assert counters["packs_received"] == counters["packs_stored"] + counters["packs_dead_lettered"]


def _ingest_process(database: str, mqtt_url: str, org: str) -> subprocess.Popen:
    env = {**os.environ, "CITYLAB_DATABASE_URL": database, "CITYLAB_MQTT_URL": mqtt_url,
           "CITYLAB_INGEST_CLIENT_ID": f"ingest-{org}", "CITYLAB_INGEST_ORG": org,
           "CITYLAB_INGEST_BATCH_MAX_AGE_MS": "50"}
    path = Path(tempfile.gettempdir()) / f"ingest-{org}.log"
    start = path.stat().st_size if path.exists() else 0
    with open(path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "citylab", "ingest"], env=env, stdout=log, stderr=log)
    # its persistent session holds the subscription once the broker granted it (SUBACK)
    wait(lambda: b"subscribed to" in path.read_bytes()[start:], 30, "ingest's subscription")
    return proc


def test_ingest_killed_between_receive_and_commit(database: str, mqtt_broker, org: str) -> None:
    _register(database, org)
    publisher = Publisher(mqtt_broker.port, org)
    ingest = _ingest_process(database, mqtt_broker.url, org)
    try:
        publisher.publish(20)
        wait(lambda: len(_stored(database)) == 200, 30, "the first packs to be stored")
        # Hold the commit: ingest receives, decodes and writes, then waits on this lock.
        blocker = psycopg.connect(database)
        blocker.execute("LOCK TABLE ingest_counters IN ACCESS EXCLUSIVE MODE")
        publisher.publish(30)
        with psycopg.connect(database, autocommit=True) as watch:
            wait(lambda: watch.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE NOT l.granted AND a.application_name = 'citylab-ingest'").fetchone()[0] > 0,
                30, "ingest to wait for its commit")
        ingest.send_signal(signal.SIGKILL)
        ingest.wait(10)
        blocker.rollback()
        blocker.close()
        assert len(_stored(database)) == 200  # the killed transaction left nothing behind
        publisher.publish(10)  # while no ingest runs: the broker keeps them for the session
        ingest = _ingest_process(database, mqtt_broker.url, org)
        wait(lambda: len(_stored(database)) >= 600, 60, "redelivery after the restart")
        _check_ledger(database, publisher.ledger)
    finally:
        ingest.kill()
        ingest.wait(10)
        publisher.close()


@pytest.fixture
def private_postgres() -> Iterator:
    root = Path(tempfile.mkdtemp(prefix="citylab-pg-outage-"))
    root.chmod(0o755)
    server = start_postgres(root, durable=False)
    with psycopg.connect(server.url) as conn:
        migrate(conn)
    yield server, root
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_postgres_stopped_under_load_and_restarted(private_postgres, mqtt_broker, org: str, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="citylab.ingest")
    server, root = private_postgres
    _register(server.url, org)
    service = IngestService(IngestOptions(database_url=server.url, mqtt_url=mqtt_broker.url,
                                          client_id=f"ingest-{org}", batch_max_age_ms=50,
                                          filters=ingest_filters(org)))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    publisher = Publisher(mqtt_broker.port, org)
    try:
        wait(service.client.connected.is_set, 20, "ingest's subscription (SUBACK)")
        publisher.publish(20)
        wait(lambda: len(_stored(server.url)) == 200, 30, "the first packs to be stored")
        server.stop()  # fast shutdown while packs keep coming
        publisher.publish(40)
        wait(lambda: any("unavailable" in r.getMessage() for r in caplog.records
                                if r.name == "citylab.ingest"), 30, "ingest to find the database away")
        acked_during_outage = service.totals["packs_stored"]
        assert acked_during_outage == 20  # nothing more was committed, so nothing more acknowledged
        restarted = start_postgres(root, port=server.port, durable=False)
        server.process = restarted.process
        publisher.publish(10)
        wait(lambda: len(_stored(server.url)) >= 700, 60, "recovery after the restart")
        _check_ledger(server.url, publisher.ledger)
    finally:
        stop.set()
        thread.join(15)
        publisher.close()
