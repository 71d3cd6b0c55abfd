"""Read queries of the lab console (and the status it records): the fleet with its
health and place on the map, the latest gateway status, and series freshness.

Where a device stands: its registered location (`devices.lat`, `devices.lon`, given
at onboarding) or, for a device registered without one (the demo district), a
place derived deterministically from its name inside its *area* (the gateway it
reports through, or itself for a gateway). `AREA_SQL`, `LAT_SQL` and `LON_SQL` are
those expressions over `devices d`; the Grafana dashboards use the same fragments,
so the console's map and Grafana's geomap agree.

Every statement is fixed text with bound parameters. psycopg errors leave as
`StorageError` / `DatabaseUnavailable` (see `storage.errors`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import psycopg

from storage.errors import map_errors
from storage.products import READABLE_SERIES

__all__ = [
    "AREA_SQL",
    "LAT_SQL",
    "LON_SQL",
    "FleetDevice",
    "GatewayStatus",
    "fleet",
    "gateway_statuses",
    "record_gateway_status",
]

# The area of a device: the gateway it reports through (a gateway is its own area).
AREA_SQL = "coalesce(d.gateway, d.device)"
# Around the centre of Stavanger: one cell per area, devices scattered in their cell.
LAT_SQL = (
    "coalesce(d.lat, 58.955 + (mod(abs(hashtext(coalesce(d.gateway, d.device))::bigint), 97)) / 97.0 * 0.030"
    " + ((mod(abs(hashtext(d.device)::bigint), 89)) / 89.0 - 0.5) * 0.006)"
)
LON_SQL = (
    "coalesce(d.lon, 5.690 + (mod(abs(hashtext(coalesce(d.gateway, d.device) || '#')::bigint), 101)) / 101.0 * 0.080"
    " + ((mod(abs(hashtext(d.device || '#')::bigint), 83)) / 83.0 - 0.5) * 0.012)"
)


@dataclass(frozen=True, slots=True)
class FleetDevice:
    device: str
    org: str
    kind: str
    gateway: str | None
    area: str
    enabled: bool
    lat: float
    lon: float
    series: int
    last_seen: datetime | None     # newest reading of any of its series
    state: str | None              # gateways: from their retained status message
    buffer_depth: int | None       # gateways: packs held by the edge, not yet committed
    status_at: datetime | None


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    device: str
    org: str
    state: str
    buffer_depth: int | None
    boot_id: str | None
    reported_at: datetime
    received_at: datetime


_FLEET = f"""
    SELECT d.device, d.org, d.kind, d.gateway, {AREA_SQL} AS area, d.enabled,
           {LAT_SQL} AS lat, {LON_SQL} AS lon,
           (SELECT count(*) FROM series s WHERE s.org = d.org AND s.device = d.device) AS series,
           (SELECT max(newest.time) FROM series s CROSS JOIN LATERAL (
                SELECT r.time FROM readings r WHERE r.series_id = s.id
                ORDER BY r.time DESC LIMIT 1) newest
            WHERE s.org = d.org AND s.device = d.device) AS last_seen,
           g.state, g.buffer_depth, g.reported_at
    FROM devices d LEFT JOIN gateway_status g ON g.org = d.org AND g.device = d.device
    WHERE d.org = %(org_slug)s
       OR (d.org, d.device) IN (SELECT s.org, s.device FROM series s WHERE s.id IN ({READABLE_SERIES}))
    ORDER BY d.kind = 'gateway' DESC, d.device
"""


def fleet(conn: psycopg.Connection, *, org_id: int, org_slug: str) -> list[FleetDevice]:
    """The devices `org` may see (its own, and those with series it holds a grant
    for), gateways first, with newest reading and status."""
    with map_errors("read fleet"):
        rows = conn.execute(_FLEET, {"org_id": org_id, "org_slug": org_slug}).fetchall()
    return [FleetDevice(*row) for row in rows]


def gateway_statuses(conn: psycopg.Connection) -> list[GatewayStatus]:
    with map_errors("read gateway status"):
        rows = conn.execute(
            "SELECT device, org, state, buffer_depth, boot_id, reported_at, received_at"
            " FROM gateway_status ORDER BY org, device"
        ).fetchall()
    return [GatewayStatus(*row) for row in rows]


def record_gateway_status(
    conn: psycopg.Connection, *, device: str, org: str, state: str, buffer_depth: int | None,
    boot_id: str | None, reported_at: datetime, status: dict[str, object],
) -> None:
    """Keep the newest status of a gateway (an older, redelivered one does not win)."""
    with map_errors("record gateway status"):
        conn.execute(
            """
            INSERT INTO gateway_status (device, org, state, buffer_depth, boot_id, reported_at, status)
            VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)
            ON CONFLICT (org, device) DO UPDATE SET
                state = excluded.state, buffer_depth = excluded.buffer_depth,
                boot_id = excluded.boot_id, reported_at = excluded.reported_at,
                received_at = now(), status = excluded.status
            WHERE gateway_status.reported_at <= excluded.reported_at
            """,
            (device, org, state, buffer_depth, boot_id, reported_at, json.dumps(status)),
        )
