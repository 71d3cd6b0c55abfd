"""Tenants of the testbed: organisations, their API keys, and the devices they onboard.

An API key reads `cl_<prefix>_<secret>`; the prefix finds the row, and only
sha256 of the whole key is stored, so a leaked table does not leak keys. Keys
are made here (`new_api_key`) so that the command line and the API make them
the same way.

An organisation's `slug` is topic-safe: it is `devices.org` and the `{org}` of
`lab/{org}/{device}/...`. A device is identified by (org, device): every
function here takes the organisation, and a name taken by another organisation
is neither visible nor in the way. A DevEUI is unique across the lab; a taken
one is refused without saying by whom.

Roles: `admin` (every role of its organisation), `provider`, `consumer`, and
`operator`, the lab's staff, who see lab-wide counters and the lab-wide audit
log. Operator keys are made by the command line only (`OPERATOR`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg

from storage.device_tokens import password_verifier
from storage.errors import StorageError, map_errors

__all__ = [
    "ANONYMOUS_ROLE",
    "API_ROLES",
    "KINDS",
    "OPERATOR",
    "ROLES",
    "ApiKey",
    "DevEuiConflict",
    "DeviceConflict",
    "DeviceRecord",
    "Organisation",
    "Principal",
    "SensorSpec",
    "authenticate",
    "create_key",
    "create_org",
    "device_logins",
    "device_of_org",
    "device_series",
    "ensure_org",
    "forget_device",
    "get_org",
    "list_keys",
    "list_org_devices",
    "list_orgs",
    "new_api_key",
    "onboard_device",
    "revoke_key",
    "set_device_enabled",
    "set_mqtt_username",
    "slugify",
]

KINDS = ("city", "provider", "research")
ROLES = ("admin", "provider", "consumer", "operator")
OPERATOR = "operator"
API_ROLES = ("admin", "provider", "consumer")   # what an organisation's admin may grant itself
ANONYMOUS_ROLE = "anonymous"
_KEY = re.compile(r"^cl_([a-f0-9]{12})_([A-Za-z0-9_-]{20,64})$")


@dataclass(frozen=True, slots=True)
class Organisation:
    id: int
    slug: str
    name: str
    kind: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    org_id: int
    prefix: str
    role: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: taken from the API key alone; without a key, an anonymous
    caller known only by its client address (`ANONYMOUS_ROLE`, reads open data only)."""

    key_id: int
    org_id: int
    org_slug: str
    org_kind: str
    role: str
    client: str = ""       # the client address of an anonymous caller

    @property
    def anonymous(self) -> bool:
        return self.role == ANONYMOUS_ROLE

    @classmethod
    def anonymous_from(cls, client: str) -> Principal:
        # org 0 and slug "" match no organisation (ids start at 1, slugs are never empty).
        return cls(key_id=0, org_id=0, org_slug="", org_kind="", role=ANONYMOUS_ROLE, client=client)


@dataclass(frozen=True, slots=True)
class SensorSpec:
    quantity: str
    unit: str | None
    interval_s: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device: str
    org: str
    gateway: str | None
    kind: str
    enabled: bool
    lat: float | None
    lon: float | None
    dev_eui: str | None
    lora_channels: dict[str, str] | None
    mqtt_username: str | None
    created_at: datetime
    last_seen: datetime | None


def slugify(name: str) -> str:
    """A topic-safe organisation slug from a name: lower-case letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48]
    return slug or "org"


def new_api_key() -> tuple[str, str, bytes]:
    """(key, prefix, sha256 of the key): the key is shown once and never stored."""
    prefix = secrets.token_hex(6)
    key = f"cl_{prefix}_{secrets.token_urlsafe(24)}"
    return key, prefix, hashlib.sha256(key.encode()).digest()


# Organisations ----------------------------------------------------------------

_ORG = "SELECT id, slug, name, kind, created_at FROM organisations"


def create_org(conn: psycopg.Connection, *, name: str, kind: str, slug: str | None = None) -> Organisation:
    """A new organisation; its slug is made unique by a numeric suffix when taken."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    base = slug or slugify(name)
    with map_errors("create organisation"):
        for attempt in range(1000):
            candidate = base if attempt == 0 else f"{base}-{attempt + 1}"
            row = conn.execute(
                "INSERT INTO organisations (slug, name, kind) VALUES (%s, %s, %s)"
                " ON CONFLICT (slug) DO NOTHING RETURNING id, slug, name, kind, created_at",
                (candidate, name, kind),
            ).fetchone()
            if row:
                return Organisation(*row)
    raise StorageError(f"no free slug for organisation {name!r}")


def get_org(conn: psycopg.Connection, org_id: int) -> Organisation | None:
    with map_errors("get organisation"):
        row = conn.execute(_ORG + " WHERE id = %s", (org_id,)).fetchone()
    return Organisation(*row) if row else None


def list_orgs(conn: psycopg.Connection) -> list[Organisation]:
    with map_errors("list organisations"):
        return [Organisation(*row) for row in conn.execute(_ORG + " ORDER BY id").fetchall()]


# Keys -------------------------------------------------------------------------

_KEYS = "SELECT id, org_id, prefix, role, label, created_at, revoked_at FROM api_keys"


def create_key(conn: psycopg.Connection, *, org_id: int, role: str, label: str = "") -> tuple[ApiKey, str]:
    """A new key of `org_id` with `role`; returns the row and the key itself (shown once)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    key, prefix, digest = new_api_key()
    with map_errors("create API key"):
        row = conn.execute(
            "INSERT INTO api_keys (org_id, prefix, key_hash, role, label) VALUES (%s, %s, %s, %s, %s)"
            " RETURNING id, org_id, prefix, role, label, created_at, revoked_at",
            (org_id, prefix, digest, role, label),
        ).fetchone()
    return ApiKey(*row), key


def list_keys(conn: psycopg.Connection, *, org_id: int) -> list[ApiKey]:
    with map_errors("list API keys"):
        rows = conn.execute(_KEYS + " WHERE org_id = %s ORDER BY id", (org_id,)).fetchall()
    return [ApiKey(*row) for row in rows]


def revoke_key(conn: psycopg.Connection, *, org_id: int, key_id: int) -> ApiKey | None:
    """Revoke a key of `org_id`; None when it has no such key."""
    with map_errors("revoke API key"):
        row = conn.execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s AND org_id = %s"
            " RETURNING id, org_id, prefix, role, label, created_at, revoked_at",
            (key_id, org_id),
        ).fetchone()
    return ApiKey(*row) if row else None


def authenticate(conn: psycopg.Connection, key: str) -> Principal | None:
    """The principal of a valid, unrevoked key; None otherwise (constant-time hash compare)."""
    match = _KEY.match(key)
    if not match:
        return None
    with map_errors("authenticate"):
        row = conn.execute(
            "SELECT k.id, k.key_hash, o.id, o.slug, o.kind, k.role FROM api_keys k"
            " JOIN organisations o ON o.id = k.org_id WHERE k.prefix = %s AND k.revoked_at IS NULL",
            (match[1],),
        ).fetchone()
    if row is None or not hmac.compare_digest(bytes(row[1]), hashlib.sha256(key.encode()).digest()):
        return None
    return Principal(key_id=row[0], org_id=row[2], org_slug=row[3], org_kind=row[4], role=row[5])


# Devices ----------------------------------------------------------------------

_DEVICE = (
    "SELECT d.device, d.org, d.gateway, d.kind, d.enabled, d.lat, d.lon, d.dev_eui, d.lora_channels,"
    " d.mqtt_username, d.created_at,"
    " (SELECT max(newest.time) FROM series s CROSS JOIN LATERAL ("
    "     SELECT r.time FROM readings r WHERE r.series_id = s.id ORDER BY r.time DESC LIMIT 1) newest"
    "  WHERE s.org = d.org AND s.device = d.device)"
    " FROM devices d"
)


def device_of_org(conn: psycopg.Connection, *, org: str, device: str) -> DeviceRecord | None:
    with map_errors("get device"):
        row = conn.execute(_DEVICE + " WHERE d.org = %s AND d.device = %s", (org, device)).fetchone()
    return DeviceRecord(*row) if row else None


def list_org_devices(conn: psycopg.Connection, *, org: str) -> list[DeviceRecord]:
    with map_errors("list devices"):
        rows = conn.execute(_DEVICE + " WHERE d.org = %s ORDER BY d.device", (org,)).fetchall()
    return [DeviceRecord(*row) for row in rows]


class DeviceConflict(StorageError):
    """The organisation already has a device of that name."""


class DevEuiConflict(DeviceConflict):
    """The LoRa DevEUI is already registered (by whom is not said)."""


def onboard_device(
    conn: psycopg.Connection,
    *,
    org: str,
    device: str,
    gateway: str | None,
    kind: str,
    lat: float | None,
    lon: float | None,
    dev_eui: str | None,
    lora_channels: dict[str, str] | None,
    sensors: list[SensorSpec],
) -> None:
    """Register a new device of `org` and its series, in one transaction.

    Raises DeviceConflict when `org` already has a device of that name,
    DevEuiConflict when the DevEUI is registered anywhere in the lab (the message
    does not say where), and ValueError when `gateway` is not a device of `org`.
    """
    with map_errors(f"onboard device {device}"), conn.transaction():
        if gateway is not None:
            found = conn.execute("SELECT 1 FROM devices WHERE device = %s AND org = %s", (gateway, org)).fetchone()
            if not found:
                raise ValueError(f"gateway {gateway!r} is not a device of your organisation")
        try:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO devices (org, device, gateway, kind, lat, lon, dev_eui, lora_channels)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (org, device, gateway, kind, lat, lon, dev_eui,
                     json.dumps(lora_channels) if lora_channels is not None else None),
                )
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "devices_dev_eui_key":
                raise DevEuiConflict(f"DevEUI {dev_eui} is already registered in the lab") from None
            raise DeviceConflict(f"your organisation already has a device {device!r}") from None
        for sensor in sensors:
            conn.execute(
                "INSERT INTO series (org, device, quantity, unit, interval_s, low, high)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (org, device, quantity) DO UPDATE SET unit = excluded.unit,"
                " interval_s = excluded.interval_s, low = excluded.low, high = excluded.high",
                (org, device, sensor.quantity, sensor.unit, sensor.interval_s, sensor.low, sensor.high),
            )


def device_logins(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(org, device, broker username) of every device that has broker credentials."""
    with map_errors("device logins"):
        return conn.execute(
            "SELECT org, device, mqtt_username FROM devices WHERE mqtt_username IS NOT NULL ORDER BY org, device"
        ).fetchall()


def set_mqtt_username(conn: psycopg.Connection, *, org: str, device: str, username: str,
                      password: str | None = None) -> None:
    """The device's broker login; with `password`, its verifier for HTTP ingest (storage.device_tokens)."""
    verifier = None if password is None else password_verifier(password)
    with map_errors("set MQTT username"):
        conn.execute("UPDATE devices SET mqtt_username = %s, mqtt_password_sha256 = coalesce(%s, mqtt_password_sha256)"
                     " WHERE org = %s AND device = %s", (username, verifier, org, device))


def set_device_enabled(conn: psycopg.Connection, *, org: str, device: str, enabled: bool) -> bool:
    """Enable or disable a device of `org`; False when it has no such device."""
    with map_errors("set device enabled"):
        row = conn.execute(
            "UPDATE devices SET enabled = %s WHERE org = %s AND device = %s RETURNING device",
            (enabled, org, device),
        ).fetchone()
    return row is not None


def forget_device(conn: psycopg.Connection, *, org: str, device: str) -> None:
    """Undo an onboarding whose broker half failed: the device and its (still empty) series."""
    with map_errors("forget device"), conn.transaction():
        conn.execute(
            "DELETE FROM series WHERE org = %s AND device = %s"
            " AND NOT EXISTS (SELECT 1 FROM readings r WHERE r.series_id = series.id)",
            (org, device),
        )
        conn.execute(
            "DELETE FROM devices d WHERE d.org = %s AND d.device = %s"
            " AND NOT EXISTS (SELECT 1 FROM series s WHERE s.org = d.org AND s.device = d.device)",
            (org, device),
        )


def device_series(conn: psycopg.Connection, *, org: str, device: str) -> list[tuple[int, str, str | None]]:
    """(series id, quantity, unit) of `org`'s device."""
    with map_errors("device series"):
        return conn.execute(
            "SELECT id, quantity, unit FROM series WHERE org = %s AND device = %s ORDER BY id", (org, device)
        ).fetchall()


def org_device_series(conn: psycopg.Connection, *, org: str) -> dict[str, list[tuple[int, str, str | None]]]:
    """device -> its (series id, quantity, unit), for every device of `org` (one statement)."""
    found: dict[str, list[tuple[int, str, str | None]]] = {}
    with map_errors("device series"):
        for device, sid, quantity, unit in conn.execute(
                "SELECT device, id, quantity, unit FROM series WHERE org = %s ORDER BY id", (org,)):
            found.setdefault(device, []).append((sid, quantity, unit))
    return found


def ensure_org(conn: psycopg.Connection, *, slug: str, name: str, kind: str) -> Organisation:
    """The organisation with `slug`, created when missing (the demo district's)."""
    with map_errors("ensure organisation"):
        conn.execute(
            "INSERT INTO organisations (slug, name, kind) VALUES (%s, %s, %s) ON CONFLICT (slug) DO NOTHING",
            (slug, name, kind),
        )
        row = conn.execute(_ORG + " WHERE slug = %s", (slug,)).fetchone()
    return Organisation(*row)
