"""The audit log: every data read and every administrative change.

A data read is one row per series served: who (organisation and key), whose
data (`owner_org`), which series, the time range and the rows. An
administrative change is one row with the action and a JSON detail. An
organisation sees the rows it caused and the rows about its own data or
resources (so a provider sees who read its series).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from storage.errors import map_errors

__all__ = ["AuditEntry", "DataRead", "list_audit", "record_change", "record_reads"]


@dataclass(frozen=True, slots=True)
class DataRead:
    series_id: int
    rows: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str               # "<org slug>/key-<id>" or "cli"
    action: str
    org_id: int | None
    key_id: int | None
    owner_org: int | None
    series_id: int | None
    time_start: datetime | None
    time_end: datetime | None
    rows: int | None
    detail: dict[str, Any]


def record_change(
    conn: psycopg.Connection, *, actor: str, action: str, org_id: int | None, key_id: int | None,
    owner_org: int | None, detail: dict[str, Any],
) -> None:
    with map_errors("audit change"):
        conn.execute(
            "INSERT INTO audit_log (actor, action, org_id, key_id, owner_org, detail) VALUES (%s, %s, %s, %s, %s, %s)",
            (actor, action, org_id, key_id, owner_org, json.dumps(detail, default=str)),
        )


def record_reads(
    conn: psycopg.Connection, *, actor: str, action: str, org_id: int | None, key_id: int | None,
    reads: list[DataRead],
    start: datetime | None, end: datetime | None,
) -> None:
    """One row per series read; the owner is looked up from the series' device. An anonymous
    read (open data, no key) has no organisation nor key: its actor names the client address."""
    if not reads:
        return
    with map_errors("audit reads"):
        conn.execute(
            "INSERT INTO audit_log (actor, action, org_id, key_id, owner_org, series_id, time_start, time_end, rows)"
            " SELECT %s, %s, %s, %s, o.id, r.series_id, %s, %s, r.rows"
            " FROM unnest(%s::integer[], %s::bigint[]) AS r(series_id, rows)"
            " JOIN series s ON s.id = r.series_id LEFT JOIN organisations o ON o.slug = s.org",
            (actor, action, org_id, key_id, start, end, [r.series_id for r in reads], [r.rows for r in reads]),
        )


def list_audit(
    conn: psycopg.Connection, *, org_id: int | None, action: str | None, series_id: int | None, start: datetime,
    end: datetime, before: int | None, limit: int,
) -> list[AuditEntry]:
    """Rows caused by `org_id` or about its data (None: every row of the lab, the
    operators' view), newest first, with id < `before`."""
    with map_errors("read audit log"):
        rows = conn.execute(
            "SELECT id, at, actor, action, org_id, key_id, owner_org, series_id, time_start, time_end, rows, detail"
            " FROM audit_log WHERE (%(org)s::bigint IS NULL OR org_id = %(org)s OR owner_org = %(org)s)"
            " AND at >= %(start)s AND at < %(end)s"
            " AND (%(action)s::text IS NULL OR action = %(action)s)"
            " AND (%(series)s::integer IS NULL OR series_id = %(series)s)"
            " AND (%(before)s::bigint IS NULL OR id < %(before)s)"
            " ORDER BY id DESC LIMIT %(limit)s",
            {"org": org_id, "start": start, "end": end, "action": action, "series": series_id, "before": before,
             "limit": limit},
        ).fetchall()
    return [AuditEntry(*row) for row in rows]
