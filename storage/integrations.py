"""LoRaWAN network-server integrations: which organisation an uplink topic belongs to.

An integration is (org, kind, application id[, tenant id]); its uplink topic
family is `v3/{app}[@{tenant}]/devices/+/up` (The Things Stack v3) or
`application/{app}/device/+/event/up` (ChirpStack v4). One application of one
network server belongs to one organisation of the lab.

Mode `publish`: the network server publishes on citylab's broker with a login
bound to the integration. Mode `subscribe` (The Things Stack, whose MQTT server
is subscribe-only): citylab's ingest connects to the network server's MQTT
server with its username and API key (`integration_secrets`, never listed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from storage.errors import map_errors

__all__ = ["Integration", "IntegrationConflict", "ServerLogin", "create_integration", "delete_integration",
           "find_integration", "integration_filter", "integration_filters", "list_integrations", "load_integrations",
           "load_server_logins", "set_integration_enabled", "set_integration_username", "topic_key"]


class IntegrationConflict(Exception):
    """That application of that network server is already an integration of the lab."""


@dataclass(frozen=True, slots=True)
class Integration:
    id: int
    org: str
    kind: str
    application_id: str
    tenant_id: str
    mqtt_username: str | None
    enabled: bool
    created_at: datetime
    mode: str = "publish"
    server_url: str | None = None
    server_username: str | None = None


@dataclass(frozen=True, slots=True)
class ServerLogin:
    """What ingest needs to connect to a subscribe-mode integration's MQTT server."""

    integration: Integration
    api_key: str = field(repr=False)


_COLUMNS = ("id, org, kind, application_id, tenant_id, mqtt_username, enabled, created_at,"
            " mode, server_url, server_username")


def integration_filter(kind: str, application_id: str, tenant_id: str = "") -> str:
    """The uplink topic filter of an integration."""
    if kind == "tts":
        app = f"{application_id}@{tenant_id}" if tenant_id else application_id
        return f"v3/{app}/devices/+/up"
    return f"application/{application_id}/device/+/event/up"


def integration_filters(kind: str, application_id: str, tenant_id: str = "") -> tuple[str, ...]:
    """Every topic an integration's network server may publish on: uplinks, then status and location events."""
    up = integration_filter(kind, application_id, tenant_id)
    if kind == "tts":
        return up, up.removesuffix("/up") + "/location/solved"
    base = up.removesuffix("/up")
    return up, base + "/status", base + "/location"


def topic_key(topic: str) -> tuple[str, str, str] | None:
    """(kind, application id, tenant id) of an uplink topic, for `load_integrations`' keys."""
    parts = topic.split("/")
    if len(parts) in (5, 6) and parts[0] == "v3":
        app, _, tenant = parts[1].partition("@")
        return "tts", app, tenant
    if len(parts) == 6 and parts[0] == "application":
        return "chirpstack", parts[1], ""
    return None


def create_integration(conn: psycopg.Connection, *, org: str, kind: str, application_id: str,
                       tenant_id: str = "", server_url: str | None = None, server_username: str | None = None,
                       api_key: str | None = None) -> Integration:
    """A `publish` integration; with `server_url`, `server_username` and `api_key` a `subscribe` one."""
    mode = "publish" if server_url is None else "subscribe"
    with map_errors("create integration"):
        try:
            with conn.transaction():
                row = conn.execute(
                    "INSERT INTO integrations (org, kind, application_id, tenant_id, mode, server_url, server_username)"
                    f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                    (org, kind, application_id, tenant_id, mode, server_url, server_username)).fetchone()
                if mode == "subscribe":
                    conn.execute("INSERT INTO integration_secrets (integration_id, api_key) VALUES (%s, %s)",
                                 (row[0], api_key))
        except psycopg.errors.UniqueViolation:
            raise IntegrationConflict(
                f"{kind} application {application_id!r} is already connected to the lab") from None
    return Integration(*row)


def delete_integration(conn: psycopg.Connection, integration_id: int) -> None:
    """Undo a creation whose broker login could not be made."""
    with map_errors("delete integration"):
        conn.execute("DELETE FROM integrations WHERE id = %s", (integration_id,))


def set_integration_username(conn: psycopg.Connection, integration_id: int, username: str) -> None:
    with map_errors("set integration login"):
        conn.execute("UPDATE integrations SET mqtt_username = %s WHERE id = %s", (username, integration_id))


def set_integration_enabled(conn: psycopg.Connection, integration_id: int, *, org: str,
                            enabled: bool) -> Integration | None:
    """Enable or disable an integration of `org`; None when it has no such integration."""
    with map_errors("set integration enabled"):
        row = conn.execute(f"UPDATE integrations SET enabled = %s WHERE id = %s AND org = %s RETURNING {_COLUMNS}",
                           (enabled, integration_id, org)).fetchone()
    return None if row is None else Integration(*row)


def find_integration(conn: psycopg.Connection, integration_id: int, *, org: str) -> Integration | None:
    with map_errors("find integration"):
        row = conn.execute(f"SELECT {_COLUMNS} FROM integrations WHERE id = %s AND org = %s",
                           (integration_id, org)).fetchone()
    return None if row is None else Integration(*row)


def load_server_logins(conn: psycopg.Connection) -> list[ServerLogin]:
    """Every enabled subscribe-mode integration with its API key, for ingest's clients."""
    columns = ", ".join(f"i.{c.strip()}" for c in _COLUMNS.split(","))
    with map_errors("load integration logins"):
        rows = conn.execute(f"SELECT {columns}, s.api_key FROM integrations i JOIN integration_secrets s"
                            " ON s.integration_id = i.id WHERE i.mode = 'subscribe' AND i.enabled ORDER BY i.id"
                            ).fetchall()
    return [ServerLogin(Integration(*row[:-1]), row[-1]) for row in rows]


def list_integrations(conn: psycopg.Connection, *, org: str) -> list[Integration]:
    with map_errors("list integrations"):
        rows = conn.execute(f"SELECT {_COLUMNS} FROM integrations WHERE org = %s ORDER BY id", (org,)).fetchall()
    return [Integration(*row) for row in rows]


def load_integrations(conn: psycopg.Connection) -> dict[tuple[str, str, str], Integration]:
    """(kind, application id, tenant id) -> integration, for every integration of the lab."""
    with map_errors("load integrations"):
        rows = conn.execute(f"SELECT {_COLUMNS} FROM integrations").fetchall()
    return {(r[2], r[3], r[4]): Integration(*r) for r in rows}
