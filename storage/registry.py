"""The device registry: which devices exist, whose they are, which gateway they sit behind."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from storage.errors import map_errors

__all__ = ["Device", "ensure_series", "load_devices", "register_device", "series_quantities", "series_units"]


@dataclass(frozen=True, slots=True)
class Device:
    device: str
    org: str
    gateway: str | None
    kind: str
    enabled: bool


def register_device(
    conn: psycopg.Connection, *, org: str, device: str, gateway: str | None = None, kind: str = "sensor"
) -> None:
    """Add a device, or update its org, gateway and kind (idempotent)."""
    with map_errors(f"register device {device}"):
        conn.execute(
            "INSERT INTO devices (device, org, gateway, kind) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (device) DO UPDATE SET org = excluded.org, gateway = excluded.gateway,"
            " kind = excluded.kind",
            (device, org, gateway, kind),
        )


def load_devices(conn: psycopg.Connection) -> dict[str, Device]:
    with map_errors("load devices"):
        rows = conn.execute("SELECT device, org, gateway, kind, enabled FROM devices").fetchall()
    return {row[0]: Device(*row) for row in rows}


def ensure_series(conn: psycopg.Connection, keys: Iterable[tuple[str, str, str | None]]) -> dict[tuple[str, str], int]:
    """Ids of the (device, quantity) series, creating the missing ones with their unit."""
    keys = list(keys)
    if not keys:
        return {}
    devices = [k[0] for k in keys]
    quantities = [k[1] for k in keys]
    units = [k[2] for k in keys]
    with map_errors("ensure series"):
        conn.execute(
            "INSERT INTO series (device, quantity, unit)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])"
            " ON CONFLICT (device, quantity) DO NOTHING",
            (devices, quantities, units),
        )
        rows = conn.execute(
            "SELECT s.device, s.quantity, s.id FROM series s"
            " JOIN unnest(%s::text[], %s::text[]) AS k(device, quantity)"
            " ON s.device = k.device AND s.quantity = k.quantity",
            (devices, quantities),
        ).fetchall()
    return {(device, quantity): sid for device, quantity, sid in rows}


def series_units(conn: psycopg.Connection, ids: list[int]) -> dict[int, str | None]:
    with map_errors("load series units"):
        return dict(conn.execute("SELECT id, unit FROM series WHERE id = ANY(%s)", (ids,)).fetchall())


def series_quantities(conn: psycopg.Connection) -> list[tuple[int, str]]:
    """(series id, quantity) of every series, for physical bounds in the stream processor."""
    with map_errors("load series"):
        return conn.execute("SELECT id, quantity FROM series").fetchall()
