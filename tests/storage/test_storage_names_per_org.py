"""Migration 0004 (names per organisation) on a database holding 0003 data, and
the schema it leaves: two organisations may both have `air-001`."""

from __future__ import annotations

import psycopg
import pytest

from storage.errors import StorageError
from storage.migrate import migrate
from storage.registry import ensure_series, load_devices, register_device
from storage.tenants import DeviceConflict, DevEuiConflict, SensorSpec, onboard_device


def _rows(conn: psycopg.Connection, sql: str) -> list[tuple]:
    return conn.execute(sql).fetchall()


def test_0004_carries_0003_data_over(empty_database: str) -> None:
    with psycopg.connect(empty_database) as conn:
        migrate(conn, use_timescaledb=False, upto=3)
        conn.execute("INSERT INTO organisations (slug, name, kind) VALUES ('acme', 'Acme', 'provider'),"
                     " ('city', 'City', 'city')")
        conn.execute("INSERT INTO devices (device, org, kind) VALUES ('gw-1', 'acme', 'gateway')")
        conn.execute("INSERT INTO devices (device, org, gateway, kind, dev_eui, mqtt_username) VALUES"
                     " ('air-001', 'acme', 'gw-1', 'serial', NULL, 'acme.air-001'),"
                     " ('lora-9', 'acme', NULL, 'lora', '0011223344556677', NULL),"
                     # a gateway of another organisation: the link 0004 cuts
                     " ('stray', 'city', 'gw-1', 'serial', NULL, NULL)")
        sid = conn.execute("INSERT INTO series (device, quantity, unit, interval_s) VALUES"
                           " ('air-001', 'pm2_5', 'ug/m3', 60) RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO readings (time, series_id, value) VALUES (now(), %s, 12.5)", (sid,))
        conn.execute("INSERT INTO ingest_packs (device, boot_id, seq, readings) VALUES"
                     " ('gw-1', 'b1', 0, 3), ('gw-1', 'b1', 1, 2), ('gone', 'b0', 0, 1)")
        conn.execute("INSERT INTO ingest_watermarks (device, boot_id, seq) VALUES ('gw-1', 'b1', 1)")
        conn.execute("INSERT INTO dead_letters (topic, device, reason, detail, payload) VALUES"
                     " ('lab/acme/gw-1/up', 'gw-1', 'undecodable', 'x', '\\x00'),"
                     " ('v3/app@ttn/devices/x/up', NULL, 'unknown_dev_eui', 'y', '\\x01')")
        conn.execute("INSERT INTO gateway_status (device, org, state, reported_at) VALUES"
                     " ('gw-1', 'acme', 'online', now())")
        conn.commit()
        applied = migrate(conn, use_timescaledb=False, upto=4)
        assert [m.version for m in applied] == [4]

        assert _rows(conn, "SELECT org, device, gateway, kind, dev_eui, mqtt_username FROM devices"
                           " ORDER BY org, device") == [
            ("acme", "air-001", "gw-1", "serial", None, "acme.air-001"),
            ("acme", "gw-1", None, "gateway", None, None),
            ("acme", "lora-9", None, "lora", "0011223344556677", None),
            ("city", "stray", None, "serial", None, None),
        ]
        assert _rows(conn, "SELECT id, org, device, quantity, unit, interval_s FROM series") == [
            (sid, "acme", "air-001", "pm2_5", "ug/m3", 60.0)]
        assert _rows(conn, "SELECT series_id, value FROM readings") == [(sid, 12.5)]
        assert _rows(conn, "SELECT org, device, boot_id, seq, readings FROM ingest_packs ORDER BY org, seq") == [
            ("", "gone", "b0", 0, 1), ("acme", "gw-1", "b1", 0, 3), ("acme", "gw-1", "b1", 1, 2)]
        assert _rows(conn, "SELECT org, device, boot_id, seq FROM ingest_watermarks") == [("acme", "gw-1", "b1", 1)]
        assert _rows(conn, "SELECT org, reason FROM dead_letters ORDER BY id") == [
            ("acme", "undecodable"), (None, "unknown_dev_eui")]
        assert _rows(conn, "SELECT org, device, state FROM gateway_status") == [("acme", "gw-1", "online")]
        assert dict(_rows(conn, "SELECT name, value FROM ingest_org_counters WHERE org = 'acme'")) == {
            "packs_stored": 2, "readings_stored": 5, "packs_dead_lettered": 1, "packs_received": 3}
        # and the migrated schema takes a second air-001
        register_device(conn, org="city", device="air-001")
        ids = ensure_series(conn, [("city", "air-001", "pm2_5", "ug/m3"), ("acme", "air-001", "pm2_5", "ug/m3")])
        assert ids[("acme", "air-001", "pm2_5")] == sid and ids[("city", "air-001", "pm2_5")] != sid
        conn.commit()
        assert all(m.version > 4 for m in migrate(conn, use_timescaledb=False))  # the later ones apply on top
        assert migrate(conn, use_timescaledb=False) == []


def test_two_organisations_both_have_air_001(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        for org in ("acme", "city"):
            onboard_device(conn, org=org, device="air-001", gateway=None, kind="sensor", lat=None, lon=None,
                           dev_eui=None, lora_channels=None, sensors=[SensorSpec("pm2_5", "ug/m3", 60, 0, 1000)])
        with pytest.raises(DeviceConflict, match="your organisation already has a device 'air-001'"):
            onboard_device(conn, org="acme", device="air-001", gateway=None, kind="sensor", lat=None, lon=None,
                           dev_eui=None, lora_channels=None, sensors=[])
        onboard_device(conn, org="acme", device="node-1", gateway=None, kind="lora", lat=None, lon=None,
                       dev_eui="A0B1C2D3E4F50617", lora_channels=None, sensors=[])
        with pytest.raises(DevEuiConflict) as refused:
            onboard_device(conn, org="city", device="node-1", gateway=None, kind="lora", lat=None, lon=None,
                           dev_eui="A0B1C2D3E4F50617", lora_channels=None, sensors=[])
        assert "acme" not in str(refused.value) and "node-1" not in str(refused.value)
        # a gateway must be the organisation's own: acme's gw is not city's
        register_device(conn, org="acme", device="gw")
        with pytest.raises(ValueError, match="not a device of your organisation"):
            onboard_device(conn, org="city", device="behind", gateway="gw", kind="serial", lat=None, lon=None,
                           dev_eui=None, lora_channels=None, sensors=[])
        with pytest.raises(StorageError) as cross:
            register_device(conn, org="city", device="behind", gateway="gw")
        assert cross.value.sqlstate == "23503"  # foreign key: (city, gw) is no device
        # operator-side re-registration under one org never touches the other's device
        register_device(conn, org="city", device="air-001", kind="serial")
        devices = load_devices(conn)
        assert devices[("acme", "air-001")].kind == "sensor"
        assert devices[("city", "air-001")].kind == "serial"
        series = _rows(conn, "SELECT org, device, quantity FROM series ORDER BY org")
        assert series == [("acme", "air-001", "pm2_5"), ("city", "air-001", "pm2_5")]


def test_the_demo_district_never_takes_another_organisations_device(database: str) -> None:
    from citylab.lab import _register_demo
    from storage.tenants import set_mqtt_username

    with psycopg.connect(database) as conn:
        # a tenant already has devices named like the demo district's
        onboard_device(conn, org="acme", device="gw-01", gateway=None, kind="sensor", lat=58.9, lon=5.7,
                       dev_eui=None, lora_channels=None, sensors=[SensorSpec("pm2_5", "ug/m3", 60, 0, 1000)])
        set_mqtt_username(conn, org="acme", device="gw-01", username="acme.gw-01")
        conn.commit()
    for _ in range(2):  # at every start
        count = _register_demo(database, "lab", serial=2, gateways=1, lora=0, meters=0)
    assert count == 3
    with psycopg.connect(database) as conn:
        rows = _rows(conn, "SELECT org, device, gateway, kind, mqtt_username, lat FROM devices ORDER BY org, device")
    assert ("acme", "gw-01", None, "sensor", "acme.gw-01", 58.9) in rows
    assert ("lab", "gw-01", None, "gateway", None, None) in rows
    assert sorted(r[0] for r in rows) == ["acme", "lab", "lab", "lab"]
