"""Alarms end to end: packs published to a real Mosquitto, ingest with a real PostgreSQL opens and
clears an alarm from a threshold rule, and the notifications reach a real local webhook and the
broker (the alarm's state retained on lab/{org}/alarms/{id})."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest import IngestOptions, IngestService
from ingest.notify import sign
from lab_probes import wait
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import ingest_filters, up_topic
from storage.alarm_rules import RuleScope
from storage.alarms import AlarmFilter, create_channel, create_rule, list_alarms
from storage.registry import register_device

pytestmark = pytest.mark.slow

T0 = 1_790_000_000.0
SECRET = "hook-secret"


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), body))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def ingest(database: str, mqtt_broker, org: str) -> Iterator[IngestService]:
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="gw-1", kind="gateway")
        register_device(conn, org=org, device="air-1", gateway="gw-1", kind="serial")
    service = IngestService(IngestOptions(
        database_url=database, mqtt_url=mqtt_broker.url, client_id=f"ingest-{org}", batch_max_age_ms=50,
        filters=ingest_filters(org), notify_allow_loopback=True, alarm_tick_s=0.5, notify_interval_s=0.2,
    ))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    wait(service.client.connected.is_set, what="ingest to connect")
    yield service
    stop.set()
    thread.join(10)


def test_an_episode_is_one_alarm_and_its_notifications_arrive(ingest, hook, database, mqtt_broker, org) -> None:
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", mqtt_broker.port)
    client.loop_start()
    seq = iter(range(1000))

    def publish(values: list[float], start: float) -> None:
        pack = Pack("boot-1", next(seq), tuple(Record("air-1/pm2_5", v, start + 60.0 * i, "ug/m3")
                                              for i, v in enumerate(values)))
        client.publish(up_topic(org, "gw-1"), encode_pack(pack), qos=1).wait_for_publish(10)

    def series_id():
        with psycopg.connect(database) as conn:
            row = conn.execute("SELECT id FROM series WHERE org = %s AND quantity = 'pm2_5'", (org,)).fetchone()
        return row and row[0]

    try:
        publish([12.0], T0)  # until ingest subscribed and stored it: the series exists
        sid = wait(lambda: series_id() or (publish([12.0], T0), None)[1], what="the series")
        with psycopg.connect(database) as conn:
            create_rule(conn, org=org, name="pm25", series_id=sid, on=25.0, off=20.0, hold_s=300)
            create_channel(conn, org=org, kind="webhook", target=f"http://127.0.0.1:{hook.server_address[1]}/h",
                           secret=SECRET)
            create_channel(conn, org=org, kind="mqtt", target=f"lab/{org}/alarms")
        # ingest reloads its rules at most every 5 s, when it commits a batch: keep it committing
        rules = ingest._pipeline.processor.rules
        wait(lambda: len(rules) == 1 or (publish([12.0], T0 + 60), None)[1], what="the rule")
        publish([30.0] * 8, T0 + 600)  # 7 minutes above 25: opens at the 6th reading (5 minutes held)
        wait(lambda: hook.received, what="the open notification")
        publish([24.0, 19.0], T0 + 1200)
        wait(lambda: len(hook.received) >= 2, what="the clear notification")
        # a subscriber that comes later sees the alarm's current state, retained
        retained: list[tuple[str, dict]] = []
        watcher = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        watcher.on_message = lambda c, u, m: retained.append((m.topic, json.loads(m.payload)))
        watcher.connect("127.0.0.1", mqtt_broker.port)
        watcher.loop_start()
        watcher.subscribe(f"lab/{org}/alarms/#", qos=1)
        wait(lambda: any(p["state"] == "cleared" for _, p in retained), what="the retained alarm state")
        watcher.loop_stop()
        watcher.disconnect()
    finally:
        client.loop_stop()
        client.disconnect()
    with psycopg.connect(database) as conn:
        (alarm,) = list_alarms(conn, org=org)
    assert alarm.state == "cleared" and alarm.opened_at.timestamp() == T0 + 600 + 300
    states = []
    for headers, body in hook.received:
        assert headers["X-Citylab-Signature"] == sign(SECRET, int(headers["X-Citylab-Timestamp"]), body)
        states.append(json.loads(body)["state"])
    assert states == ["open", "cleared"]
    assert {t for t, _ in retained} == {f"lab/{org}/alarms/{alarm.id}"}


def test_anomaly_and_silence_alarms_from_a_real_broker(ingest, hook, database, mqtt_broker, org) -> None:
    with psycopg.connect(database) as conn:
        create_rule(conn, org=org, name="air-1-silent", kind="silence", scope=RuleScope(device="air-1"), intervals=4)
        create_rule(conn, org=org, name="pm-range", kind="anomaly", scope=RuleScope(quantity="pm2_5"),
                    anomaly_kinds=["out_of_range"], min_score=0.9, clear_s=3600)
        create_channel(conn, org=org, kind="webhook", target=f"http://127.0.0.1:{hook.server_address[1]}/h",
                       secret=SECRET)
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", mqtt_broker.port)
    client.loop_start()

    def notes() -> list[tuple[str, str]]:
        return [(p["rule"], p["state"]) for p in (json.loads(b) for _, b in hook.received)]

    try:
        now = time.time()  # a reading a second for 30 s, one of them beyond PM2.5's physical range
        values = [12.0 + (i % 3) for i in range(30)]
        values[20] = 1500.0
        pack = Pack("boot-1", 0, tuple(Record("air-1/pm2_5", v, now - 30 + i, "ug/m3") for i, v in enumerate(values)))
        client.publish(up_topic(org, "gw-1"), encode_pack(pack), qos=1).wait_for_publish(10)
        # then nothing: four expected intervals later the timer opens the silence alarm
        wait(lambda: ("air-1-silent", "open") in notes(), what="the silence alarm")
        assert ("pm-range", "open") in notes()
        with psycopg.connect(database) as conn:
            (silent,) = list_alarms(conn, org=org, where=AlarmFilter(kind="silence"))
        assert silent.state == "open" and silent.opened_at.timestamp() == pytest.approx(now - 1 + 4, abs=0.5)
        pack = Pack("boot-1", 1, (Record("air-1/pm2_5", 13.0, time.time(), "ug/m3"),))
        client.publish(up_topic(org, "gw-1"), encode_pack(pack), qos=1).wait_for_publish(10)
        wait(lambda: ("air-1-silent", "cleared") in notes(), what="the silence to clear")
    finally:
        client.loop_stop()
        client.disconnect()
    assert sorted(notes()) == [("air-1-silent", "cleared"), ("air-1-silent", "open"), ("pm-range", "open")]


def test_gateway_offline_alarm_from_its_status_messages(ingest, hook, database, mqtt_broker, org) -> None:
    from psycopg_pool import ConnectionPool

    from api.console.status import StatusListener

    with psycopg.connect(database) as conn:
        create_rule(conn, org=org, name="gw-offline", kind="device", condition="offline", hold_s=0,
                    scope=RuleScope(device="gw-1"), severity="critical")
        create_channel(conn, org=org, kind="webhook", target=f"http://127.0.0.1:{hook.server_address[1]}/h",
                       secret=SECRET)
    pool = ConnectionPool(database, min_size=1, max_size=2, open=True)
    listener = StatusListener(mqtt_broker.url, pool)  # the API's listener: retained status into gateway_status
    listener.start()
    gateway = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    gateway.connect("127.0.0.1", mqtt_broker.port)
    gateway.loop_start()
    topic = f"lab/{org}/gw-1/status"

    def status(state: str) -> None:
        body = json.dumps({"state": state, "buffer_depth": 0, "time": time.time()}).encode()
        gateway.publish(topic, body, qos=1, retain=True).wait_for_publish(10)

    def notes() -> list[tuple[str, str]]:
        return [(p["rule"], p["state"]) for p in (json.loads(b) for _, b in hook.received)]

    try:
        status("online")
        status("offline")  # what the broker publishes as the gateway's will
        wait(lambda: ("gw-offline", "open") in notes(), what="the offline alarm")
        status("online")
        wait(lambda: ("gw-offline", "cleared") in notes(), what="the alarm to clear")
    finally:
        gateway.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
        gateway.loop_stop()
        gateway.disconnect()
        listener.stop()
        pool.close()
    with psycopg.connect(database) as conn:
        (alarm,) = list_alarms(conn, org=org)
    assert (alarm.kind, alarm.device, alarm.severity, alarm.detail) == ("device", "gw-1", "critical",
                                                                        {"state": "offline"})
    assert notes() == [("gw-offline", "open"), ("gw-offline", "cleared")]
