"""Ingest killed (SIGKILL) between an alarm's commit and its notification: the restarted ingest
sends it, once, to a real local webhook, although the rule's episode opens again in its fresh
stream state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest import IngestOptions, IngestService
from lab_probes import wait
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import ingest_filters, up_topic
from storage.alarms import create_channel, create_rule
from storage.registry import ensure_series, register_device

pytestmark = pytest.mark.slow

CHILD = """
import sys, threading
from ingest import IngestOptions, IngestService
database, mqtt, org, client_id = sys.argv[1:5]
from protocol.topics import ingest_filters
# notifications are tried at start (none is due yet), then not for an hour: the kill comes first
service = IngestService(IngestOptions(database_url=database, mqtt_url=mqtt, client_id=client_id,
    filters=ingest_filters(org), batch_max_age_ms=50, notify_allow_loopback=True, notify_interval_s=3600))
stop = threading.Event()
threading.Thread(target=service.run, args=(stop,), daemon=True).start()
service.client.connected.wait(30)
print("ready", flush=True)
stop.wait()
"""


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.server.received.append(self.rfile.read(int(self.headers["Content-Length"])))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _rows(database: str, sql: str) -> list[tuple]:
    with psycopg.connect(database) as conn:
        return conn.execute(sql).fetchall()


def test_killed_between_commit_and_send_notifies_once(database, mqtt_broker, org, tmp_path: Path) -> None:
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    hook.received = []  # type: ignore[attr-defined]
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="gw-1", kind="gateway")
        register_device(conn, org=org, device="air-1", gateway="gw-1", kind="serial")
        sid = ensure_series(conn, [(org, "air-1", "pm2_5", "ug/m3")])[(org, "air-1", "pm2_5")]
        create_rule(conn, org=org, name="pm25", series_id=sid, on=25.0, off=20.0)
        create_channel(conn, org=org, kind="webhook", target=f"http://127.0.0.1:{hook.server_address[1]}/",
                       secret="kill-test-secret")
    publisher = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    publisher.connect("127.0.0.1", mqtt_broker.port)
    publisher.loop_start()

    def publish(seq: int) -> None:
        pack = Pack("boot-a", seq, tuple(Record("air-1/pm2_5", 30.0 + i, 1_790_000_000.0 + 60 * (3 * seq + i),
                                                "ug/m3") for i in range(3)))
        publisher.publish(up_topic(org, "gw-1"), encode_pack(pack), qos=1).wait_for_publish(10)

    client_id = f"ingest-{org}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, database, mqtt_broker.url, org, client_id],
                             stdout=subprocess.PIPE, stderr=(tmp_path / "child.log").open("w"), env=env, text=True)
    stop = threading.Event()
    worker = None
    try:
        assert child.stdout.readline().strip() == "ready"
        publish(0)
        wait(lambda: _rows(database, "SELECT status, attempts FROM notifications") == [("pending", 0)],
                  what="the alarm and its notification to commit")
        child.send_signal(signal.SIGKILL)  # between the commit and the send
        child.wait(10)
        assert hook.received == []
        service = IngestService(IngestOptions(
            database_url=database, mqtt_url=mqtt_broker.url, client_id=client_id, filters=ingest_filters(org),
            batch_max_age_ms=50, notify_allow_loopback=True, notify_interval_s=0.2))
        worker = threading.Thread(target=service.run, args=(stop,), daemon=True)
        worker.start()
        wait(service.client.connected.is_set, what="ingest to connect again")
        publish(1)  # still above the limit: the fresh stream state opens the episode again
        wait(lambda: _rows(database, "SELECT count(*) FROM readings")[0][0] == 6, what="the next pack")
        wait(lambda: _rows(database, "SELECT status FROM notifications") == [("delivered",)],
                  what="the delivery")
    finally:
        stop.set()
        if worker is not None:
            worker.join(10)
        if child.poll() is None:
            child.kill()
            child.wait(10)
        publisher.loop_stop()
        publisher.disconnect()
        hook.shutdown()
        hook.server_close()
    assert _rows(database, "SELECT count(*) FROM alarms") == [(1,)]
    assert _rows(database, "SELECT count(*), bool_and(ok) FROM notification_attempts") == [(1, True)]
    (body,) = hook.received
    assert json.loads(body)["state"] == "open" and json.loads(body)["rule"] == "pm25"
