"""What SensorThings writes need from the registry."""

from __future__ import annotations

import psycopg

from storage.errors import map_errors

__all__ = ["add_series", "device_of_thing", "quantity_of_observed_property", "series_of_device",
           "thing_of_device", "writable_datastream"]


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
