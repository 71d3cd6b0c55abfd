"""NGSI-LD subscriptions of an organisation and their delivery status
(table `ngsild_subscriptions`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from storage.errors import map_errors

__all__ = [
    "StoredSubscription",
    "active_subscriptions",
    "claim_notification",
    "create_subscription",
    "delete_subscription",
    "get_subscription",
    "list_subscriptions",
    "record_delivery",
    "update_subscription",
]


@dataclass(frozen=True, slots=True)
class StoredSubscription:
    id: str
    org_id: int
    org: str
    tenant: str | None
    subscription: dict[str, Any]   # types, attributes and q in expanded form
    context: list[Any]
    active: bool
    expires_at: datetime | None
    throttling_s: float | None
    times_sent: int
    times_failed: int
    last_notification: datetime | None
    last_success: datetime | None
    last_failure: datetime | None
    last_error: str | None
    created_at: datetime
    modified_at: datetime


_COLUMNS = ("id, org_id, org, tenant, subscription, context, active, expires_at, throttling_s, times_sent,"
            " times_failed, last_notification, last_success, last_failure, last_error, created_at, modified_at")


def create_subscription(conn: psycopg.Connection, *, id: str, org_id: int, org: str, tenant: str | None,
                        subscription: dict[str, Any], context: list[Any], active: bool,
                        expires_at: datetime | None, throttling_s: float | None) -> StoredSubscription | None:
    """None when the id is taken."""
    with map_errors("create subscription"):
        row = conn.execute(
            "INSERT INTO ngsild_subscriptions (id, org_id, org, tenant, subscription, context, active, expires_at,"
            " throttling_s) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING"
            f" RETURNING {_COLUMNS}",
            (id, org_id, org, tenant, Jsonb(subscription), Jsonb(context), active, expires_at, throttling_s),
        ).fetchone()
    return StoredSubscription(*row) if row else None


def get_subscription(conn: psycopg.Connection, *, org_id: int, id: str) -> StoredSubscription | None:
    with map_errors("get subscription"):
        row = conn.execute(f"SELECT {_COLUMNS} FROM ngsild_subscriptions WHERE org_id = %s AND id = %s",
                           (org_id, id)).fetchone()
    return StoredSubscription(*row) if row else None


def list_subscriptions(conn: psycopg.Connection, *, org_id: int, offset: int, limit: int
                       ) -> tuple[list[StoredSubscription], int]:
    with map_errors("list subscriptions"):
        rows = conn.execute(
            f"SELECT {_COLUMNS}, count(*) OVER () FROM ngsild_subscriptions WHERE org_id = %s"
            " ORDER BY created_at, id OFFSET %s LIMIT %s", (org_id, offset, limit)).fetchall()
        total = rows[0][-1] if rows else conn.execute(
            "SELECT count(*) FROM ngsild_subscriptions WHERE org_id = %s", (org_id,)).fetchone()[0]
    return [StoredSubscription(*row[:-1]) for row in rows], int(total)


def update_subscription(conn: psycopg.Connection, *, org_id: int, id: str, subscription: dict[str, Any],
                        active: bool, expires_at: datetime | None, throttling_s: float | None) -> bool:
    with map_errors("update subscription"):
        row = conn.execute(
            "UPDATE ngsild_subscriptions SET subscription = %s, active = %s, expires_at = %s, throttling_s = %s,"
            " modified_at = now() WHERE org_id = %s AND id = %s RETURNING 1",
            (Jsonb(subscription), active, expires_at, throttling_s, org_id, id)).fetchone()
    return row is not None


def delete_subscription(conn: psycopg.Connection, *, org_id: int, id: str) -> bool:
    with map_errors("delete subscription"):
        row = conn.execute("DELETE FROM ngsild_subscriptions WHERE org_id = %s AND id = %s RETURNING 1",
                           (org_id, id)).fetchone()
    return row is not None


def active_subscriptions(conn: psycopg.Connection, *, org: str) -> list[StoredSubscription]:
    """The active, unexpired subscriptions that may see `org`'s entities (owned by it)."""
    with map_errors("active subscriptions"):
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM ngsild_subscriptions WHERE org = %s AND active"
            " AND (expires_at IS NULL OR expires_at > now()) ORDER BY id", (org,)).fetchall()
    return [StoredSubscription(*row) for row in rows]


def claim_notification(conn: psycopg.Connection, *, id: str, at: datetime) -> bool:
    """Take the subscription's next notification at `at` unless its throttling forbids it: one
    atomic UPDATE, so that of several API processes noticing changes at once only one notifies."""
    with map_errors("claim notification"):
        row = conn.execute(
            "UPDATE ngsild_subscriptions SET last_notification = %(at)s WHERE id = %(id)s"
            " AND (throttling_s IS NULL OR last_notification IS NULL"
            " OR last_notification <= %(at)s - make_interval(secs => throttling_s)) RETURNING 1",
            {"id": id, "at": at}).fetchone()
    return row is not None


def record_delivery(conn: psycopg.Connection, *, id: str, at: datetime, ok: bool, error: str | None) -> None:
    with map_errors("record notification"):
        conn.execute(
            "UPDATE ngsild_subscriptions SET times_sent = times_sent + 1, last_notification = %(at)s,"
            " last_success = CASE WHEN %(ok)s THEN %(at)s ELSE last_success END,"
            " last_failure = CASE WHEN %(ok)s THEN last_failure ELSE %(at)s END,"
            " times_failed = times_failed + CASE WHEN %(ok)s THEN 0 ELSE 1 END,"
            " last_error = CASE WHEN %(ok)s THEN last_error ELSE %(error)s END WHERE id = %(id)s",
            {"id": id, "at": at, "ok": ok, "error": error})
