"""LoRaWAN network-server integrations: which organisation an uplink topic belongs to.

An integration is (org, kind, application id[, tenant id]); its uplink topic
family is `v3/{app}[@{tenant}]/devices/+/up` (The Things Stack v3) or
`application/{app}/device/+/event/up` (ChirpStack v4). One application of one
network server belongs to one organisation of the lab.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from storage.errors import map_errors

__all__ = ["Integration", "IntegrationConflict", "create_integration", "delete_integration", "integration_filter",
           "integration_filters", "list_integrations",
           "load_integrations", "set_integration_username", "topic_key"]


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


_COLUMNS = "id, org, kind, application_id, tenant_id, mqtt_username, enabled, created_at"


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
                       tenant_id: str = "") -> Integration:
    with map_errors("create integration"):
        try:
            with conn.transaction():
                row = conn.execute(
                    "INSERT INTO integrations (org, kind, application_id, tenant_id) VALUES (%s, %s, %s, %s)"
                    f" RETURNING {_COLUMNS}", (org, kind, application_id, tenant_id)).fetchone()
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


def list_integrations(conn: psycopg.Connection, *, org: str) -> list[Integration]:
    with map_errors("list integrations"):
        rows = conn.execute(f"SELECT {_COLUMNS} FROM integrations WHERE org = %s ORDER BY id", (org,)).fetchall()
    return [Integration(*row) for row in rows]


def load_integrations(conn: psycopg.Connection) -> dict[tuple[str, str, str], Integration]:
    """(kind, application id, tenant id) -> integration, for every integration of the lab."""
    with map_errors("load integrations"):
        rows = conn.execute(f"SELECT {_COLUMNS} FROM integrations").fetchall()
    return {(r[2], r[3], r[4]): Integration(*r) for r in rows}
