"""What SensorThings writes need from the registry."""

from __future__ import annotations

import psycopg

from storage.errors import map_errors

__all__ = ["add_series", "device_of_thing", "device_of_thing_row", "quantity_of_observed_property",
           "series_of_device", "series_row", "set_device_location", "thing_of_device", "update_series",
           "writable_datastream"]


def writable_datastream(conn: psycopg.Connection, *, org: str, series_id: int) -> tuple[str, str, str | None] | None:
    """(device, quantity, unit) of a series of `org`'s own devices, or None."""
    with map_errors("writable datastream"):
        return conn.execute(
            "SELECT s.device, s.quantity, s.unit FROM series s WHERE s.id = %s AND s.org = %s",
            (series_id, org),
        ).fetchone()


def quantity_of_observed_property(conn: psycopg.Connection, op_id: int) -> str | None:
    with map_errors("observed property"):
        row = conn.execute("SELECT quantity FROM observed_properties WHERE id = %s", (op_id,)).fetchone()
    return row[0] if row else None


def device_of_thing(conn: psycopg.Connection, *, org: str, thing_id: int) -> str | None:
    """The device name of `org`'s Thing, or None."""
    with map_errors("device of thing"):
        row = conn.execute("SELECT device FROM devices WHERE thing_id = %s AND org = %s", (thing_id, org)).fetchone()
    return row[0] if row else None


def thing_of_device(conn: psycopg.Connection, *, org: str, device: str) -> int | None:
    with map_errors("thing of device"):
        row = conn.execute("SELECT thing_id FROM devices WHERE device = %s AND org = %s", (device, org)).fetchone()
    return row[0] if row else None


def add_series(conn: psycopg.Connection, *, org: str, device: str, quantity: str, unit: str | None) -> int | None:
    """A new series of an existing device of `org`; None when the device already has that quantity."""
    with map_errors("add series"):
        row = conn.execute(
            "INSERT INTO series (org, device, quantity, unit) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (org, device, quantity) DO NOTHING RETURNING id", (org, device, quantity, unit)).fetchone()
    return row[0] if row else None


def series_of_device(conn: psycopg.Connection, *, org: str, device: str, quantity: str) -> int | None:
    with map_errors("series of device"):
        row = conn.execute("SELECT id FROM series WHERE org = %s AND device = %s AND quantity = %s",
                           (org, device, quantity)).fetchone()
    return row[0] if row else None


def device_of_thing_row(conn: psycopg.Connection, *, org: str, thing_id: int) -> dict | None:
    """What an update of `org`'s Thing needs of its device, or None."""
    with map_errors("device of thing"):
        row = conn.execute(
            "SELECT device, kind, enabled, gateway, dev_eui, lat, lon, mqtt_username FROM devices"
            " WHERE thing_id = %s AND org = %s", (thing_id, org)).fetchone()
    keys = ("device", "kind", "enabled", "gateway", "dev_eui", "lat", "lon", "mqtt_username")
    return dict(zip(keys, row)) if row else None


def set_device_location(conn: psycopg.Connection, *, org: str, device: str,
                        lat: float | None, lon: float | None) -> None:
    """Move `org`'s device (lat/lon None: it has no Location any more)."""
    with map_errors("set device location"):
        conn.execute("UPDATE devices SET lat = %s, lon = %s WHERE org = %s AND device = %s", (lat, lon, org, device))


def series_row(conn: psycopg.Connection, *, org: str, series_id: int) -> dict | None:
    """What an update of `org`'s Datastream needs of its series, or None."""
    with map_errors("series row"):
        row = conn.execute(
            "SELECT s.device, s.quantity, s.unit, s.interval_s, s.low, s.high, d.thing_id,"
            " EXISTS (SELECT 1 FROM readings r WHERE r.series_id = s.id) AS has_readings"
            " FROM series s JOIN devices d ON d.org = s.org AND d.device = s.device"
            " WHERE s.id = %s AND s.org = %s", (series_id, org)).fetchone()
    keys = ("device", "quantity", "unit", "interval_s", "low", "high", "thing_id", "has_readings")
    return dict(zip(keys, row)) if row else None


def update_series(conn: psycopg.Connection, *, org: str, series_id: int, quantity: str, unit: str | None,
                  interval_s: float | None, low: float | None, high: float | None) -> None:
    """Set what a Datastream update may change of `org`'s series."""
    with map_errors("update series"):
        conn.execute(
            "UPDATE series SET quantity = %s, unit = %s, interval_s = %s, low = %s, high = %s"
            " WHERE id = %s AND org = %s", (quantity, unit, interval_s, low, high, series_id, org))
