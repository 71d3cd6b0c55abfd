"""What SensorThings writes need from the registry."""

from __future__ import annotations

import psycopg

from storage.errors import map_errors

__all__ = ["writable_datastream"]


def writable_datastream(conn: psycopg.Connection, *, org: str, series_id: int) -> tuple[str, str, str | None] | None:
    """(device, quantity, unit) of a series of `org`'s own devices, or None."""
    with map_errors("writable datastream"):
        return conn.execute(
            "SELECT s.device, s.quantity, s.unit FROM series s JOIN devices d ON d.device = s.device"
            " WHERE s.id = %s AND d.org = %s",
            (series_id, org),
        ).fetchone()
