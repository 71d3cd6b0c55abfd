"""The device registry: which devices exist, whose they are, which gateway they sit behind.

A device is identified by (org, device): names are unique within an
organisation, not across the lab. A gateway is a device of the same
organisation. DevEUIs are unique across the lab.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from storage.errors import map_errors

__all__ = [
    "Device",
    "LoRaWANDevice",
    "SenMLNames",
    "ensure_series",
    "find_series",
    "load_device",
    "load_devices",
    "load_lorawan_device",
    "load_lorawan_devices",
    "load_senml_names",
    "register_device",
    "registry_version",
    "series_quantities",
    "series_units",
    "set_dev_eui",
    "set_senml_names",
]


@dataclass(frozen=True, slots=True)
class Device:
    device: str
    org: str
    gateway: str | None   # a device of the same org
    kind: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class LoRaWANDevice:
    """A device bridged from a LoRaWAN network server, found by its DevEUI."""

    device: str
    org: str
    enabled: bool
    channels: dict[int, str]  # Cayenne LPP channel -> quantity


@dataclass(frozen=True, slots=True)
class SenMLNames:
    """How an unmodified SenML device names its records (see ingest.decode).

    With `base_name`, `names` maps the rest of a resolved name after the base
    ("" for the base name itself) to a quantity; without it, `names` maps exact
    resolved names to quantities.
    """

    device: str
    gateway: str | None
    base_name: str | None
    names: dict[str, str]


def load_senml_names(conn: psycopg.Connection, *, org: str | None = None,
                     publisher: str | None = None) -> dict[tuple[str, str], SenMLNames]:
    """(org, device) -> its declared SenML names, for every enabled device that declared some;
    with `org` and `publisher`, only for that device of `org` and the devices behind it."""
    sql = "SELECT org, device, gateway, senml_names FROM devices WHERE senml_names IS NOT NULL AND enabled"
    params: tuple[str, ...] = ()
    if org is not None and publisher is not None:
        sql += " AND org = %s AND (device = %s OR gateway = %s)"
        params = (org, publisher, publisher)
    with map_errors("load SenML names"):
        rows = conn.execute(sql, params).fetchall()
    return {(org, device): SenMLNames(device, gateway, doc.get("base_name"),
                                      {str(k): str(v) for k, v in (doc.get("names") or {}).items()})
            for org, device, gateway, doc in rows}


def set_senml_names(conn: psycopg.Connection, device: str, *, org: str, base_name: str | None,
                    names: dict[str, str] | None) -> None:
    """Declare (or, with neither argument, clear) how `org`'s device names its SenML records."""
    doc = None if base_name is None and not names else {"base_name": base_name, "names": dict(names or {})}
    with map_errors(f"set the SenML names of {org}/{device}"):
        conn.execute("UPDATE devices SET senml_names = %s WHERE org = %s AND device = %s",
                     (Jsonb(doc) if doc is not None else None, org, device))


def load_lorawan_devices(conn: psycopg.Connection) -> dict[str, LoRaWANDevice]:
    """DevEUI (16 uppercase hex digits) -> device, for every device that has one."""
    with map_errors("load LoRaWAN devices"):
        rows = conn.execute(
            "SELECT upper(dev_eui), device, org, enabled, coalesce(lora_channels, '{}'::jsonb)"
            " FROM devices WHERE dev_eui IS NOT NULL"
        ).fetchall()
    return {eui: LoRaWANDevice(device, org, enabled, {int(k): str(v) for k, v in channels.items()})
            for eui, device, org, enabled, channels in rows}


def load_lorawan_device(conn: psycopg.Connection, dev_eui: str) -> LoRaWANDevice | None:
    """The device that has DevEUI `dev_eui` now (one indexed lookup), or None."""
    with map_errors("load a LoRaWAN device"):
        row = conn.execute(
            "SELECT device, org, enabled, coalesce(lora_channels, '{}'::jsonb) FROM devices WHERE dev_eui = upper(%s)",
            (dev_eui,),
        ).fetchone()
    if row is None:
        return None
    device, org, enabled, channels = row
    return LoRaWANDevice(device, org, enabled, {int(k): str(v) for k, v in channels.items()})


def set_dev_eui(conn: psycopg.Connection, device: str, dev_eui: str, channels: dict[int, str] | None = None,
                *, org: str) -> None:
    with map_errors(f"set the DevEUI of {org}/{device}"):
        conn.execute(
            "UPDATE devices SET dev_eui = upper(%s), lora_channels = %s WHERE org = %s AND device = %s",
            (dev_eui, Jsonb({str(k): v for k, v in (channels or {}).items()}), org, device),
        )


def register_device(
    conn: psycopg.Connection, *, org: str, device: str, gateway: str | None = None, kind: str = "sensor"
) -> None:
    """Add a device of `org`, or update the gateway and kind of `org`'s device of
    that name (idempotent). A device of another organisation with the same name is
    a different device and is never touched."""
    with map_errors(f"register device {org}/{device}"):
        conn.execute(
            "INSERT INTO devices (org, device, gateway, kind) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (org, device) DO UPDATE SET gateway = excluded.gateway, kind = excluded.kind",
            (org, device, gateway, kind),
        )


def registry_version(conn: psycopg.Connection) -> tuple[int, int]:
    """A fingerprint of what authorisation depends on (org, gateway, enabled, DevEUI of every device;
    org and enabled of every network-server integration)."""
    with map_errors("registry version"):
        return tuple(conn.execute(
            "SELECT (SELECT count(*) FROM devices) + (SELECT count(*) FROM integrations),"
            " (SELECT coalesce(sum(hashtext(concat_ws('|', org, device, gateway, enabled, dev_eui, senml_names))), 0)"
            " FROM devices)"
            " + (SELECT coalesce(sum(hashtext(concat_ws('|', id, org, enabled))), 0) FROM integrations)"
        ).fetchone())


def load_devices(conn: psycopg.Connection, *, org: str | None = None,
                 publisher: str | None = None) -> dict[tuple[str, str], Device]:
    """(org, device) -> device, for every device of the lab; with `org` and `publisher`, only
    that device of `org` and the devices behind it (its primary key and the gateway index)."""
    sql, params = "SELECT device, org, gateway, kind, enabled FROM devices", ()
    if org is not None and publisher is not None:
        sql, params = sql + " WHERE org = %s AND (device = %s OR gateway = %s)", (org, publisher, publisher)
    with map_errors("load devices"):
        rows = conn.execute(sql, params).fetchall()
    return {(row[1], row[0]): Device(*row) for row in rows}


def load_device(conn: psycopg.Connection, *, org: str, device: str) -> Device | None:
    """`org`'s device of that name as registered now (one primary-key lookup), or None."""
    with map_errors(f"load device {org}/{device}"):
        row = conn.execute("SELECT device, org, gateway, kind, enabled FROM devices WHERE org = %s AND device = %s",
                           (org, device)).fetchone()
    return Device(*row) if row is not None else None


def ensure_series(
    conn: psycopg.Connection, keys: Iterable[tuple[str, str, str, str | None]]
) -> dict[tuple[str, str, str], int]:
    """Ids of the (org, device, quantity) series, creating the missing ones with their unit."""
    keys = list(keys)
    if not keys:
        return {}
    orgs = [k[0] for k in keys]
    devices = [k[1] for k in keys]
    quantities = [k[2] for k in keys]
    units = [k[3] for k in keys]
    with map_errors("ensure series"):
        conn.execute(
            "INSERT INTO series (org, device, quantity, unit)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])"
            " ON CONFLICT (org, device, quantity) DO NOTHING",
            (orgs, devices, quantities, units),
        )
        rows = conn.execute(
            "SELECT s.org, s.device, s.quantity, s.id FROM series s"
            " JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k(org, device, quantity)"
            " ON s.org = k.org AND s.device = k.device AND s.quantity = k.quantity",
            (orgs, devices, quantities),
        ).fetchall()
    return {(org, device, quantity): sid for org, device, quantity, sid in rows}


def find_series(
    conn: psycopg.Connection, keys: Iterable[tuple[str, str, str]]
) -> dict[tuple[str, str, str], tuple[int, str | None]]:
    """(id, unit) of the existing (org, device, quantity) series among `keys`; nothing is created."""
    keys = list(keys)
    if not keys:
        return {}
    with map_errors("find series"):
        rows = conn.execute(
            "SELECT s.org, s.device, s.quantity, s.id, s.unit FROM series s"
            " JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k(org, device, quantity)"
            " ON s.org = k.org AND s.device = k.device AND s.quantity = k.quantity",
            ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
        ).fetchall()
    return {(org, device, quantity): (sid, unit) for org, device, quantity, sid, unit in rows}


def series_units(conn: psycopg.Connection, ids: list[int]) -> dict[int, str | None]:
    with map_errors("load series units"):
        return dict(conn.execute("SELECT id, unit FROM series WHERE id = ANY(%s)", (ids,)).fetchall())


def series_quantities(conn: psycopg.Connection) -> list[tuple[int, str]]:
    """(series id, quantity) of every series, for physical bounds in the stream processor."""
    with map_errors("load series"):
        return conn.execute("SELECT id, quantity FROM series").fetchall()
