"""The episodes of anomaly, silence and device rules (migration 0015) as alarms, in the
caller's transaction; each state change queues its notifications (``storage.alarms``).

* **threshold**: ``extend_alarms`` counts a batch's readings that keep an open episode up into its
  alarm (``hits``, ``last_at``, the newest value); the episodes themselves are
  ``storage.alarms.apply_episodes``.
* **anomaly**: ``apply_anomalies`` opens one alarm per (rule, series) at the first matching flag
  of a batch, or, when one is open, counts the batch's flags into it (``hits``, ``last_at``, the
  peak score); ``clear_quiet_anomalies`` clears those whose newest flag is ``clear_s`` old.
* **silence**: ``open_silences`` opens an alarm for each overdue (rule, series) found on
  ingest's timer; ``clear_silences`` clears them at the series' next committed reading.
* **device**: ``open_device_alarms`` and ``clear_device_alarms``, from ingest's timer.

Times are UTC microseconds since the epoch. Every function returns the ids of the alarms whose
state changed; an open event whose episode is already open changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import psycopg

from storage.alarms import queue_notifications
from storage.errors import map_errors

__all__ = ["apply_anomalies", "clear_device_alarms", "clear_quiet_anomalies", "clear_silences", "extend_alarms",
           "open_alarm_keys", "open_device_alarms", "open_silences"]

_US = "('epoch'::timestamptz + x.{} * interval '1 microsecond')"
_EPISODE = "ON CONFLICT (rule_id, series_id, device_org, device) WHERE state <> 'cleared'"


def _ints(a) -> list[int]:
    return np.asarray(a, np.int64).tolist()


def apply_anomalies(
    conn: psycopg.Connection, *, rule_id: Sequence[int], series_id: Sequence[int], first_us: Sequence[int],
    value: Sequence[float], score: Sequence[float], kind: Sequence[str], last_us: Sequence[int],
    peak: Sequence[float], hits: Sequence[int],
) -> list[int]:
    """One row per (rule, series) with matching flags in a batch: the first of them (time, value,
    score, kind), the newest one's time, the highest score and their number."""
    if not len(rule_id):
        return []
    with map_errors("apply anomaly rules"), conn.cursor() as cur:
        rows = cur.execute(
            f"INSERT INTO alarms (org, rule_id, series_id, state, opened_at, open_value, last_at, hits, detail)"
            f" SELECT r.org, r.id, x.sid, 'open', {_US.format('first')}, x.value, {_US.format('last')}, x.hits,"
            f"  jsonb_build_object('kind', x.kind, 'score', x.score, 'peak_score', x.peak)"
            f" FROM unnest(%s::bigint[], %s::int[], %s::bigint[], %s::float8[], %s::float8[], %s::text[],"
            f"  %s::bigint[], %s::float8[], %s::int[]) AS x(rule, sid, first, value, score, kind, last, peak, hits)"
            f" JOIN alert_rules r ON r.id = x.rule"
            f" {_EPISODE} DO UPDATE SET last_at = greatest(alarms.last_at, excluded.last_at),"
            f"  hits = alarms.hits + excluded.hits, updated_at = now(),"
            f"  detail = alarms.detail || jsonb_build_object('peak_score', greatest("
            f"   (alarms.detail->>'peak_score')::float8, (excluded.detail->>'peak_score')::float8))"
            f" RETURNING id, xmax = 0",
            (_ints(rule_id), _ints(series_id), _ints(first_us), list(map(float, value)), list(map(float, score)),
             list(kind), _ints(last_us), list(map(float, peak)), _ints(hits)),
        ).fetchall()
        opened = [r[0] for r in rows if r[1]]
        queue_notifications(cur, opened, "open")
    return opened


def extend_alarms(conn: psycopg.Connection, *, rule_id: Sequence[int], series_id: Sequence[int],
                  last_us: Sequence[int], last_value: Sequence[float], hits: Sequence[int]) -> None:
    """Count readings that kept episodes up into their alarms: per (rule, series, episode) the newest
    one's time and value and their number, into the alarm of (rule, series) opened last at or before
    that time (ignored when not newer than what the alarm has)."""
    if not len(rule_id):
        return
    with map_errors("extend alarms"), conn.cursor() as cur:
        cur.execute(
            f"UPDATE alarms a SET last_at = {_US.format('last')}, hits = a.hits + x.hits, updated_at = now(),"
            f" detail = a.detail || jsonb_build_object('last_value', x.v)"
            f" FROM unnest(%s::bigint[], %s::int[], %s::bigint[], %s::float8[], %s::int[]) AS x(rule, sid, last, v, hits)"
            f" WHERE a.id = (SELECT b.id FROM alarms b WHERE b.rule_id = x.rule AND b.series_id = x.sid"
            f"  AND b.opened_at <= {_US.format('last')} ORDER BY b.opened_at DESC LIMIT 1)"
            f" AND {_US.format('last')} > coalesce(a.last_at, a.opened_at)",
            (_ints(rule_id), _ints(series_id), _ints(last_us), list(map(float, last_value)), _ints(hits)))


def clear_quiet_anomalies(conn: psycopg.Connection) -> list[int]:
    """Clear the anomaly alarms whose newest flag is at least their rule's ``clear_s`` old; the
    alarm clears at that flag's time + ``clear_s``."""
    with map_errors("clear quiet anomaly alarms"), conn.cursor() as cur:
        quiet = "coalesce(a.last_at, a.opened_at) + r.clear_s * interval '1 second'"
        ids = [r[0] for r in cur.execute(
            f"UPDATE alarms a SET state = 'cleared', cleared_at = {quiet}, updated_at = now() FROM alert_rules r"
            f" WHERE r.id = a.rule_id AND r.kind = 'anomaly' AND a.state <> 'cleared' AND {quiet} <= now()"
            f" RETURNING a.id").fetchall()]
        queue_notifications(cur, ids, "cleared")
    return ids


def open_silences(conn: psycopg.Connection, *, rule_id: Sequence[int], series_id: Sequence[int],
                  since_us: Sequence[int], now_us: int) -> list[tuple[int, int, int]]:
    """Open silence alarms: (rule, series) silent since `since_us` (when the rule's limit passed);
    the (alarm id, rule id, series id) of those opened."""
    if not len(rule_id):
        return []
    with map_errors("open silence alarms"), conn.cursor() as cur:
        rows = cur.execute(
            f"INSERT INTO alarms (org, rule_id, series_id, state, opened_at, detail)"
            f" SELECT r.org, r.id, x.sid, 'open', {_US.format('since')},"
            f"  jsonb_build_object('intervals', r.intervals, 'overdue_s', (%s - x.since) / 1e6)"
            f" FROM unnest(%s::bigint[], %s::int[], %s::bigint[]) AS x(rule, sid, since)"
            f" JOIN alert_rules r ON r.id = x.rule AND r.kind = 'silence'"
            f" {_EPISODE} DO NOTHING RETURNING id, rule_id, series_id",
            (int(now_us), _ints(rule_id), _ints(series_id), _ints(since_us)),
        ).fetchall()
        queue_notifications(cur, [r[0] for r in rows], "open")
    return [tuple(r) for r in rows]


def clear_silences(conn: psycopg.Connection, *, series_id: Sequence[int], time_us: Sequence[int],
                   value: Sequence[float]) -> list[int]:
    """Clear the open silence alarms of these series: a reading (its time, value) arrived."""
    if not len(series_id):
        return []
    with map_errors("clear silence alarms"), conn.cursor() as cur:
        ids = [r[0] for r in cur.execute(
            f"UPDATE alarms a SET state = 'cleared', cleared_at = greatest(a.opened_at, {_US.format('t')}),"
            f" clear_value = x.v, updated_at = now()"
            f" FROM unnest(%s::int[], %s::bigint[], %s::float8[]) AS x(sid, t, v), alert_rules r"
            f" WHERE a.series_id = x.sid AND r.id = a.rule_id AND r.kind = 'silence' AND a.state <> 'cleared'"
            f" RETURNING a.id", (_ints(series_id), _ints(time_us), list(map(float, value)))).fetchall()]
        queue_notifications(cur, ids, "cleared")
    return ids


def open_alarm_keys(conn: psycopg.Connection, kind: str) -> list[tuple[int, int | None, str | None, str | None]]:
    """(rule id, series id, device org, device) of every alarm of rules of `kind` still open."""
    with map_errors(f"read open {kind} alarms"):
        return conn.execute(
            "SELECT a.rule_id, a.series_id, a.device_org, a.device FROM alarms a JOIN alert_rules r ON r.id = a.rule_id"
            " WHERE r.kind = %s AND a.state <> 'cleared' ORDER BY a.id", (kind,)).fetchall()


def open_device_alarms(conn: psycopg.Connection, rows: Sequence[tuple[int, str, str, int, float | None, dict]]
                       ) -> list[int]:
    """Open device alarms from (rule id, device org, device, since µs, buffer depth or None, detail)."""
    if not rows:
        return []
    with map_errors("open device alarms"), conn.cursor() as cur:
        ids = [r[0] for r in cur.execute(
            f"INSERT INTO alarms (org, rule_id, device_org, device, state, opened_at, open_value, last_at, detail)"
            f" SELECT r.org, r.id, x.dorg, x.dev, 'open', {_US.format('since')}, x.v, now(), x.detail::jsonb"
            f" FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::bigint[], %s::float8[], %s::text[])"
            f"  AS x(rule, dorg, dev, since, v, detail) JOIN alert_rules r ON r.id = x.rule AND r.kind = 'device'"
            f" {_EPISODE} DO NOTHING RETURNING id",
            ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [int(r[3]) for r in rows],
             [r[4] for r in rows], [json.dumps(r[5]) for r in rows])).fetchall()]
        queue_notifications(cur, ids, "open")
    return ids


def clear_device_alarms(conn: psycopg.Connection, rows: Sequence[tuple[int, str, str, float | None]]) -> list[int]:
    """Clear device alarms of (rule id, device org, device, buffer depth or None)."""
    if not rows:
        return []
    with map_errors("clear device alarms"), conn.cursor() as cur:
        ids = [r[0] for r in cur.execute(
            "UPDATE alarms a SET state = 'cleared', cleared_at = now(), clear_value = x.v, updated_at = now()"
            " FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::float8[]) AS x(rule, dorg, dev, v)"
            " WHERE a.rule_id = x.rule AND a.device_org = x.dorg AND a.device = x.dev AND a.state <> 'cleared'"
            " RETURNING a.id",
            ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])).fetchall()]
        queue_notifications(cur, ids, "cleared")
    return ids
