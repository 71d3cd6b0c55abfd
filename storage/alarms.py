"""Alarms (migrations 0010, 0015): the episodes of an organisation's alert rules
(``storage.alarm_rules``), their lifecycle and the outbox of their notifications.

An alarm is about one series (or, for a device rule, one device) and one episode: an open event
opens it (a replayed event, e.g. after ingest restarted, finds it already open and changes
nothing), it is acknowledged with a comment while it lasts, and a clear event clears it. The
stream's threshold episodes arrive through ``apply_episodes``; anomaly, silence and device
episodes through ``storage.alarm_conditions``. Every state change queues one notification per
channel of the organisation in the same transaction (``queue_notifications``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta, timezone

import psycopg
from psycopg.rows import class_row

from storage.alarm_rules import AlertRule, RuleScope, ScopeNotFound, SeriesNotFound, create_rule, list_rules
from storage.errors import StorageError, map_errors

__all__ = [
    "ALARM_STATES", "Alarm", "AlarmFilter", "AlertRule", "Channel", "Episode", "Notification", "RuleScope",
    "ScopeNotFound", "SeriesNotFound", "acknowledge_alarm", "alarm_at", "apply_episodes", "claim_due",
    "create_channel", "create_rule", "delete_series_alarms", "list_alarms", "list_channels", "list_rules",
    "queue_notifications",
    "record_attempt",
]

ALARM_STATES = ("open", "acknowledged", "cleared")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class Alarm:
    id: int
    org: str
    rule_id: int
    rule: str
    kind: str
    severity: str
    series_id: int | None
    device_org: str | None
    device: str | None
    quantity: str | None
    state: str
    opened_at: datetime
    open_value: float | None
    last_at: datetime | None
    hits: int
    detail: dict
    cleared_at: datetime | None
    clear_value: float | None
    acked_at: datetime | None
    acked_by: str | None
    ack_comment: str | None


@dataclass(frozen=True, slots=True)
class Episode:
    """One event of ``stream.RuleEvents``: rule `rule_id` opened (or cleared) at `time_us` on
    `series_id` (None: the rule's own series)."""

    rule_id: int
    time_us: int
    value: float
    opened: bool
    series_id: int | None = None


_ALARM_SELECT = (
    "SELECT a.id, a.org, a.rule_id, r.name AS rule, r.kind, r.severity, a.series_id,"
    " coalesce(a.device_org, s.org) AS device_org, coalesce(a.device, s.device) AS device, s.quantity, a.state,"
    " a.opened_at, a.open_value, a.last_at, a.hits, a.detail, a.cleared_at, a.clear_value, a.acked_at, a.acked_by,"
    " a.ack_comment FROM alarms a JOIN alert_rules r ON r.id = a.rule_id LEFT JOIN series s ON s.id = a.series_id"
)


def alarm_at(time_us: int) -> datetime:
    """UTC microseconds since the epoch as a timestamptz value."""
    return EPOCH + timedelta(microseconds=int(time_us))


def apply_episodes(conn: psycopg.Connection, episodes: Iterable[Episode]) -> list[tuple[int, str]]:
    """Open and clear alarms for the threshold rules' episodes, in order; the (alarm id, new
    state) of every alarm that changed. An open event while its rule's episode on that series is
    already open, or a clear event with none open, changes nothing (replays are harmless)."""
    changed: list[tuple[int, str]] = []
    with map_errors("apply rule episodes"), conn.cursor() as cur:
        for e in episodes:
            if e.opened:
                row = cur.execute(
                    "INSERT INTO alarms (org, rule_id, series_id, state, opened_at, open_value, last_at)"
                    " SELECT r.org, r.id, coalesce(%s, r.series_id), 'open', %s, %s, %s FROM alert_rules r"
                    " WHERE r.id = %s"
                    " ON CONFLICT (rule_id, series_id, device_org, device) WHERE state <> 'cleared' DO NOTHING"
                    " RETURNING id",
                    (e.series_id, alarm_at(e.time_us), float(e.value), alarm_at(e.time_us), e.rule_id),
                ).fetchone()
                state = "open"
            else:
                row = cur.execute(
                    "UPDATE alarms a SET state = 'cleared', cleared_at = %s, clear_value = %s, updated_at = now()"
                    " FROM alert_rules r WHERE r.id = a.rule_id AND a.rule_id = %s"
                    " AND a.series_id = coalesce(%s, r.series_id) AND a.state <> 'cleared' RETURNING a.id",
                    (alarm_at(e.time_us), float(e.value), e.rule_id, e.series_id),
                ).fetchone()
                state = "cleared"
            if row is not None:
                changed.append((row[0], state))
                queue_notifications(cur, [row[0]], state)
    return changed


def queue_notifications(cur: psycopg.Cursor, alarm_ids: list[int], state: str) -> None:
    """Queue one notification of this state change per enabled channel of each alarm's
    organisation, in the transaction that made the change (the outbox)."""
    if not alarm_ids:
        return
    cur.execute(
        "INSERT INTO notifications (channel_id, alarm_id, state, payload)"
        " SELECT c.id, a.id, %(state)s::text, jsonb_build_object("
        "   'alarm_id', a.id, 'org', a.org, 'rule_id', a.rule_id, 'rule', r.name, 'kind', r.kind,"
        "   'severity', r.severity, 'series_id', a.series_id, 'device', coalesce(a.device, s.device),"
        "   'device_org', coalesce(a.device_org, s.org), 'quantity', s.quantity, 'state', %(state)s::text,"
        "   'opened_at', a.opened_at, 'open_value', a.open_value, 'last_at', a.last_at, 'hits', a.hits,"
        "   'detail', a.detail, 'cleared_at', a.cleared_at, 'clear_value', a.clear_value,"
        "   'acked_by', a.acked_by, 'ack_comment', a.ack_comment)"
        " FROM alarms a JOIN alert_rules r ON r.id = a.rule_id LEFT JOIN series s ON s.id = a.series_id"
        " JOIN notification_channels c ON c.org = a.org AND c.enabled"
        " WHERE a.id = ANY(%(alarms)s) ON CONFLICT (channel_id, alarm_id, state) DO NOTHING",
        {"state": state, "alarms": list(alarm_ids)},
    )


def acknowledge_alarm(conn: psycopg.Connection, *, org: str, alarm_id: int, by: str, comment: str) -> Alarm | None:
    """Acknowledge an open alarm of `org` with a comment; None when `org` has no such open alarm."""
    with map_errors(f"acknowledge alarm {alarm_id}"), conn.cursor() as cur:
        row = cur.execute(
            "UPDATE alarms SET state = 'acknowledged', acked_at = now(), acked_by = %s, ack_comment = %s,"
            " updated_at = now() WHERE id = %s AND org = %s AND state = 'open' RETURNING id",
            (by, comment, alarm_id, org),
        ).fetchone()
        if row is None:
            return None
        queue_notifications(cur, [alarm_id], "acknowledged")
    return list_alarms(conn, org=org, where=AlarmFilter(alarm_id=alarm_id), limit=1)[0]


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    """Which alarms to list: each given part narrows the answer (opened in [since, until))."""

    states: tuple[str, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None
    rule_id: int | None = None
    kind: str | None = None
    severity: str | None = None
    series_id: int | None = None
    device: str | None = None
    quantity: str | None = None
    alarm_id: int | None = None


def list_alarms(
    conn: psycopg.Connection, *, org: str, where: AlarmFilter = AlarmFilter(), limit: int = 100,
    states: Iterable[str] | None = None, since: datetime | None = None, until: datetime | None = None,
) -> list[Alarm]:
    """Alarms of `org` matching `where` (`states`, `since` and `until` are short for its parts),
    newest first."""
    where = replace(where, states=tuple(states) if states is not None else where.states,
                    since=since or where.since, until=until or where.until)
    if where.states is not None and not set(where.states) <= set(ALARM_STATES):
        raise StorageError(f"alarm states must be among {', '.join(ALARM_STATES)}, got {list(where.states)}")
    if not 1 <= limit <= 100_000:
        raise StorageError("limit must be in [1, 100000]")
    params = {f.name: getattr(where, f.name) for f in fields(where)}
    params.update(org=org, limit=limit, states=list(where.states) if where.states is not None else None)
    with map_errors("list alarms"), conn.cursor(row_factory=class_row(Alarm)) as cur:
        return cur.execute(
            f"{_ALARM_SELECT} WHERE a.org = %(org)s"
            f" AND (%(states)s::text[] IS NULL OR a.state = ANY(%(states)s))"
            f" AND (%(since)s::timestamptz IS NULL OR a.opened_at >= %(since)s)"
            f" AND (%(until)s::timestamptz IS NULL OR a.opened_at < %(until)s)"
            f" AND (%(rule_id)s::bigint IS NULL OR a.rule_id = %(rule_id)s)"
            f" AND (%(kind)s::text IS NULL OR r.kind = %(kind)s)"
            f" AND (%(severity)s::text IS NULL OR r.severity = %(severity)s)"
            f" AND (%(series_id)s::int IS NULL OR a.series_id = %(series_id)s)"
            f" AND (%(device)s::text IS NULL OR coalesce(a.device, s.device) = %(device)s)"
            f" AND (%(quantity)s::text IS NULL OR s.quantity = %(quantity)s)"
            f" AND (%(alarm_id)s::bigint IS NULL OR a.id = %(alarm_id)s)"
            f" ORDER BY a.opened_at DESC, a.id DESC LIMIT %(limit)s",
            params,
        ).fetchall()


def delete_series_alarms(conn: psycopg.Connection, series_ids: list[int]) -> int:
    """Delete the alarms about these series (with their notifications and attempts), when the
    series themselves are deleted: alarms of rules scoped wider than one series (a rule on one
    series keeps its series from deletion); the number of alarms deleted."""
    with map_errors("delete the alarms of series"), conn.cursor() as cur:
        cur.execute("DELETE FROM notification_attempts WHERE notification_id IN (SELECT n.id FROM notifications n"
                    " JOIN alarms a ON a.id = n.alarm_id WHERE a.series_id = ANY(%s))", (series_ids,))
        cur.execute("DELETE FROM notifications WHERE alarm_id IN (SELECT id FROM alarms WHERE series_id = ANY(%s))",
                    (series_ids,))
        return cur.execute("DELETE FROM alarms WHERE series_id = ANY(%s)", (series_ids,)).rowcount


# Notification channels and the outbox ---------------------------------------------------

CHANNEL_KINDS = ("webhook", "smtp", "mqtt")


@dataclass(frozen=True, slots=True)
class Channel:
    id: int
    org: str
    kind: str
    target: str
    secret: str | None
    smtp_host: str | None
    smtp_port: int | None
    enabled: bool


@dataclass(frozen=True, slots=True)
class Notification:
    """A queued notification and the channel it goes to."""

    id: int
    alarm_id: int
    state: str
    payload: dict
    attempts: int
    channel: Channel


_CHANNEL_COLUMNS = "id, org, kind, target, secret, smtp_host, smtp_port, enabled"


def create_channel(
    conn: psycopg.Connection, *, org: str, kind: str, target: str, secret: str | None = None,
    smtp_host: str | None = None, smtp_port: int | None = None,
) -> Channel:
    """A webhook (`target` its URL, `secret` the HMAC key), e-mail (`target` the recipient,
    handed to `smtp_host`:`smtp_port`) or MQTT channel (`target` the topic prefix, its alarms
    retained under ``<target>/<alarm id>``) of `org`."""
    if kind not in CHANNEL_KINDS:
        raise StorageError(f"channel kind must be one of {', '.join(CHANNEL_KINDS)}, got {kind!r}")
    with map_errors(f"create {kind} channel of {org}"), conn.cursor(row_factory=class_row(Channel)) as cur:
        return cur.execute(
            f"INSERT INTO notification_channels (org, kind, target, secret, smtp_host, smtp_port)"
            f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_CHANNEL_COLUMNS}",
            (org, kind, target, secret, smtp_host, smtp_port),
        ).fetchone()


def list_channels(conn: psycopg.Connection, *, org: str) -> list[Channel]:
    with map_errors("list channels"), conn.cursor(row_factory=class_row(Channel)) as cur:
        return cur.execute(f"SELECT {_CHANNEL_COLUMNS} FROM notification_channels WHERE org = %s ORDER BY id",
                           (org,)).fetchall()


def claim_due(conn: psycopg.Connection, *, limit: int = 100, exclude: Iterable[int] = ()) -> list[Notification]:
    """Pending notifications whose time has come (but those in `exclude`), locked for the
    caller's transaction (other dispatchers skip them), oldest first."""
    with map_errors("claim notifications"), conn.cursor() as cur:
        rows = cur.execute(
            f"SELECT n.id, n.alarm_id, n.state, n.payload, n.attempts,"
            f" {', '.join('c.' + c for c in _CHANNEL_COLUMNS.split(', '))}"
            f" FROM notifications n JOIN notification_channels c ON c.id = n.channel_id"
            f" WHERE n.status = 'pending' AND n.next_at <= now() AND NOT n.id = ANY(%s)"
            f" ORDER BY n.id LIMIT %s FOR UPDATE OF n SKIP LOCKED",
            (list(exclude), limit),
        ).fetchall()
    return [Notification(r[0], r[1], r[2], r[3], r[4], Channel(*r[5:])) for r in rows]


def record_attempt(
    conn: psycopg.Connection, notification_id: int, *, ok: bool, detail: str, retry_in_s: float | None,
) -> str:
    """Record one delivery try; the notification becomes delivered (ok), pending again in
    `retry_in_s` seconds, or dead (no retry left). Returns its new status."""
    status = "delivered" if ok else ("pending" if retry_in_s is not None else "dead")
    with map_errors(f"record notification attempt {notification_id}"), conn.cursor() as cur:
        cur.execute("INSERT INTO notification_attempts (notification_id, ok, detail) VALUES (%s, %s, %s)",
                    (notification_id, ok, detail[:2000]))
        cur.execute(
            "UPDATE notifications SET attempts = attempts + 1, status = %s,"
            " next_at = CASE WHEN %s = 'pending' THEN now() + make_interval(secs => %s) ELSE next_at END,"
            " finished_at = CASE WHEN %s = 'pending' THEN NULL ELSE now() END WHERE id = %s",
            (status, status, retry_in_s or 0.0, status, notification_id),
        )
    return status
