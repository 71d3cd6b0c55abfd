"""Alert rules and alarms (migration 0010): an organisation's threshold rules on its own
series, and the alarms their episodes open.

The stream evaluates the rules (``stream.ThresholdRules``) and reports, per batch, the
episodes it opened and cleared; ``apply_episodes`` turns them into alarm rows in the caller's
transaction: an open event opens one alarm per episode (a replayed event, e.g. after ingest
restarted, finds it already open and changes nothing), a clear event clears it. Alarms are
acknowledged with a comment while they last.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg
from psycopg.rows import class_row

from storage.errors import StorageError, map_errors

__all__ = [
    "ALARM_STATES", "Alarm", "AlertRule", "Channel", "Episode", "Notification", "SeriesNotFound",
    "acknowledge_alarm", "apply_episodes", "claim_due", "create_channel", "create_rule", "list_alarms",
    "list_channels", "list_rules", "record_attempt",
]

ALARM_STATES = ("open", "acknowledged", "cleared")
SEVERITIES = ("info", "warning", "critical")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class SeriesNotFound(StorageError):
    """The organisation has no series of that id (it may be another organisation's)."""


@dataclass(frozen=True, slots=True)
class AlertRule:
    id: int
    org: str
    name: str
    series_id: int
    above: bool
    on_value: float
    off_value: float
    hold_s: float
    severity: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class Alarm:
    id: int
    org: str
    rule_id: int
    series_id: int
    state: str
    opened_at: datetime
    open_value: float
    cleared_at: datetime | None
    clear_value: float | None
    acked_at: datetime | None
    acked_by: str | None
    ack_comment: str | None


@dataclass(frozen=True, slots=True)
class Episode:
    """One event of ``stream.RuleEvents``: rule `rule_id` opened (or cleared) at `time_us`."""

    rule_id: int
    time_us: int
    value: float
    opened: bool


_RULE_COLUMNS = "id, org, name, series_id, above, on_value, off_value, hold_s, severity, enabled"
_ALARM_COLUMNS = ("id, org, rule_id, series_id, state, opened_at, open_value, cleared_at, clear_value,"
                  " acked_at, acked_by, ack_comment")


def create_rule(
    conn: psycopg.Connection, *, org: str, name: str, series_id: int, on: float, off: float | None = None,
    hold_s: float = 0.0, above: bool = True, severity: str = "warning",
) -> AlertRule:
    """A rule of `org` on one of its own series; a series of another organisation (or none) is
    refused as not found."""
    off = on if off is None else off
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in (on, off, hold_s)):
        raise StorageError(f"rule {name!r}: on, off and hold_s must be finite numbers")
    if severity not in SEVERITIES:
        raise StorageError(f"rule {name!r}: severity must be one of {', '.join(SEVERITIES)}")
    with map_errors(f"create rule {org}/{name}"), conn.cursor(row_factory=class_row(AlertRule)) as cur:
        rule = cur.execute(
            f"INSERT INTO alert_rules (org, name, series_id, above, on_value, off_value, hold_s, severity)"
            f" SELECT %s, %s, s.id, %s, %s, %s, %s, %s FROM series s WHERE s.id = %s AND s.org = %s"
            f" RETURNING {_RULE_COLUMNS}",
            (org, name, above, float(on), float(off), float(hold_s), severity, series_id, org),
        ).fetchone()
    if rule is None:
        raise SeriesNotFound(f"rule {name!r}: series {series_id} not found in organisation {org!r}")
    return rule


def list_rules(conn: psycopg.Connection, *, org: str | None = None, enabled: bool = True) -> list[AlertRule]:
    """Rules of `org` (every organisation's for None, as ingest loads them), by id."""
    with map_errors("list rules"), conn.cursor(row_factory=class_row(AlertRule)) as cur:
        return cur.execute(
            f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE (%(org)s::text IS NULL OR org = %(org)s)"
            f" AND (NOT %(enabled)s OR enabled) ORDER BY id",
            {"org": org, "enabled": enabled},
        ).fetchall()


def _at(time_us: int) -> datetime:
    """UTC microseconds since the epoch as a timestamptz value."""
    return EPOCH + timedelta(microseconds=int(time_us))


def apply_episodes(conn: psycopg.Connection, episodes: Iterable[Episode]) -> list[tuple[int, str]]:
    """Open and clear alarms for the rules' episodes, in order; the (alarm id, new state) of every
    alarm that changed. An open event while its rule's episode is already open, or a clear event
    with none open, changes nothing (replays are harmless)."""
    changed: list[tuple[int, str]] = []
    with map_errors("apply rule episodes"), conn.cursor() as cur:
        for e in episodes:
            if e.opened:
                row = cur.execute(
                    "INSERT INTO alarms (org, rule_id, series_id, state, opened_at, open_value)"
                    " SELECT r.org, r.id, r.series_id, 'open', %s, %s FROM alert_rules r WHERE r.id = %s"
                    " ON CONFLICT (rule_id) WHERE state <> 'cleared' DO NOTHING RETURNING id",
                    (_at(e.time_us), float(e.value), e.rule_id),
                ).fetchone()
                if row is not None:
                    changed.append((row[0], "open"))
                    _enqueue(cur, row[0], "open")
            else:
                row = cur.execute(
                    "UPDATE alarms SET state = 'cleared', cleared_at = %s, clear_value = %s, updated_at = now()"
                    " WHERE rule_id = %s AND state <> 'cleared' RETURNING id",
                    (_at(e.time_us), float(e.value), e.rule_id),
                ).fetchone()
                if row is not None:
                    changed.append((row[0], "cleared"))
                    _enqueue(cur, row[0], "cleared")
    return changed


def _enqueue(cur: psycopg.Cursor, alarm_id: int, state: str) -> None:
    """Queue one notification of this state change per enabled channel of the alarm's
    organisation, in the transaction that made the change (the outbox)."""
    cur.execute(
        "INSERT INTO notifications (channel_id, alarm_id, state, payload)"
        " SELECT c.id, a.id, %(state)s::text, jsonb_build_object("
        "   'alarm_id', a.id, 'org', a.org, 'rule_id', a.rule_id, 'rule', r.name, 'severity', r.severity,"
        "   'series_id', a.series_id, 'state', %(state)s::text, 'opened_at', a.opened_at, 'open_value', a.open_value,"
        "   'cleared_at', a.cleared_at, 'clear_value', a.clear_value, 'acked_by', a.acked_by,"
        "   'ack_comment', a.ack_comment)"
        " FROM alarms a JOIN alert_rules r ON r.id = a.rule_id"
        " JOIN notification_channels c ON c.org = a.org AND c.enabled"
        " WHERE a.id = %(alarm)s ON CONFLICT (channel_id, alarm_id, state) DO NOTHING",
        {"state": state, "alarm": alarm_id},
    )


def acknowledge_alarm(conn: psycopg.Connection, *, org: str, alarm_id: int, by: str, comment: str) -> Alarm | None:
    """Acknowledge an open alarm of `org` with a comment; None when `org` has no such open alarm."""
    with map_errors(f"acknowledge alarm {alarm_id}"), conn.cursor(row_factory=class_row(Alarm)) as cur:
        alarm = cur.execute(
            f"UPDATE alarms SET state = 'acknowledged', acked_at = now(), acked_by = %s, ack_comment = %s,"
            f" updated_at = now() WHERE id = %s AND org = %s AND state = 'open' RETURNING {_ALARM_COLUMNS}",
            (by, comment, alarm_id, org),
        ).fetchone()
        if alarm is not None:
            _enqueue(cur, alarm.id, "acknowledged")
        return alarm


def list_alarms(
    conn: psycopg.Connection, *, org: str, states: Iterable[str] | None = None, since: datetime | None = None,
    until: datetime | None = None, limit: int = 100,
) -> list[Alarm]:
    """Alarms of `org` opened in [since, until), newest first, optionally in these states."""
    states = list(states) if states is not None else None
    if states is not None and not set(states) <= set(ALARM_STATES):
        raise StorageError(f"alarm states must be among {', '.join(ALARM_STATES)}, got {states}")
    if not 1 <= limit <= 10_000:
        raise StorageError("limit must be in [1, 10000]")
    with map_errors("list alarms"), conn.cursor(row_factory=class_row(Alarm)) as cur:
        return cur.execute(
            f"SELECT {_ALARM_COLUMNS} FROM alarms WHERE org = %(org)s"
            f" AND (%(states)s::text[] IS NULL OR state = ANY(%(states)s))"
            f" AND (%(since)s::timestamptz IS NULL OR opened_at >= %(since)s)"
            f" AND (%(until)s::timestamptz IS NULL OR opened_at < %(until)s)"
            f" ORDER BY opened_at DESC, id DESC LIMIT %(limit)s",
            {"org": org, "states": states, "since": since, "until": until, "limit": limit},
        ).fetchall()


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
