"""The gateway status listener: retained status messages from a real broker into
`gateway_status` in a real database; the newest report of a gateway wins."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt
from psycopg_pool import ConnectionPool

from api.console.status import StatusListener, parse_status
from lab_probes import wait
from storage import connect
from storage.console import fleet, gateway_statuses, record_gateway_status
from storage.registry import register_device

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_parse_status() -> None:
    report = parse_status("lab/acme/gw-1/status", b'{"state":"online","time":1740830400.5,"buffer_depth":7,'
                                                   b'"boot_id":"b1"}', now=NOW)
    assert (report.org, report.device, report.state, report.buffer_depth, report.boot_id) == (
        "acme", "gw-1", "online", 7, "b1")
    assert report.reported_at == datetime.fromtimestamp(1740830400.5, tz=timezone.utc)
    will = parse_status("lab/acme/gw-1/status", b'{"state":"offline"}', now=NOW)
    assert will.state == "offline" and will.reported_at == NOW and will.buffer_depth is None
    assert parse_status("lab/acme/gw-1/status", b"\xff not json", now=NOW) is None
    assert parse_status("lab/acme/gw-1/status", b'{"no":"state"}', now=NOW) is None
    assert parse_status("lab/acme/gw-1/up", b'{"state":"online"}', now=NOW) is None


def test_newest_status_wins(database: str) -> None:
    with connect(database, autocommit=True) as conn:
        record_gateway_status(conn, device="gw-1", org="acme", state="online", buffer_depth=3, boot_id="b",
                              reported_at=NOW, status={"state": "online"})
        record_gateway_status(conn, device="gw-1", org="acme", state="offline", buffer_depth=None, boot_id="b",
                              reported_at=NOW - timedelta(minutes=1), status={"state": "offline"})
        (status,) = gateway_statuses(conn)
    assert (status.state, status.buffer_depth, status.reported_at) == ("online", 3, NOW)


def test_fleet_is_per_organisation(database: str) -> None:
    with connect(database, autocommit=True) as conn:
        register_device(conn, org="acme", device="gw-a", gateway=None, kind="gateway")
        register_device(conn, org="acme", device="air-a", gateway="gw-a", kind="serial")
        register_device(conn, org="other", device="air-b", gateway=None, kind="serial")
        record_gateway_status(conn, device="gw-a", org="acme", state="online", buffer_depth=5, boot_id="b",
                              reported_at=NOW, status={})
        mine = fleet(conn, org_id=-1, org_slug="acme")
    assert [d.device for d in mine] == ["gw-a", "air-a"]  # gateways first; nothing of "other"
    gw, air = mine
    assert (gw.state, gw.buffer_depth, gw.area, air.area) == ("online", 5, "gw-a", "gw-a")
    assert 58.9 < air.lat < 59.0 and 5.6 < air.lon < 5.8


def test_listener_records_retained_status_from_the_broker(database: str, mqtt_broker, org: str) -> None:
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{org}-gw", protocol=mqtt.MQTTv5)
    publisher.connect(mqtt_broker.host, mqtt_broker.port)
    publisher.loop_start()
    body = {"state": "online", "time": time.time(), "buffer_depth": 42, "boot_id": "b1"}
    publisher.publish(f"lab/{org}/gw-9/status", json.dumps(body), qos=1, retain=True).wait_for_publish(10)

    pool = ConnectionPool(database, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True)
    listener = StatusListener(mqtt_broker.url, pool)
    listener.start()
    try:
        def statuses() -> list:
            with pool.connection() as conn:
                return [s for s in gateway_statuses(conn) if s.org == org]

        rows = wait(statuses, 20, "the gateway's status in the database")
        assert [(s.device, s.state, s.buffer_depth) for s in rows] == [("gw-9", "online", 42)]
        # the will message of a vanished gateway replaces it
        publisher.publish(f"lab/{org}/gw-9/status", b'{"state":"offline"}', qos=1, retain=True).wait_for_publish(10)
        rows = wait(lambda: (r := statuses()) and r[0].state == "offline" and r, 20,
                    "the gateway's will message in the database")
        assert rows[0].state == "offline"
        assert listener.dropped == 0 and listener.failed == 0
    finally:
        listener.stop()
        pool.close()
        publisher.publish(f"lab/{org}/gw-9/status", b"", qos=1, retain=True).wait_for_publish(10)
        publisher.loop_stop()
        publisher.disconnect()
