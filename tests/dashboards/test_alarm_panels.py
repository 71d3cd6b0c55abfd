"""The Alarms dashboard's queries against a real database holding known alarms: the count panel
counts what is active, unacknowledged and by severity; the table lists the active ones."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg

from dashboards import expand_macros
from dashboards.alarms import alarms
from storage.alarms import Episode, acknowledge_alarm, apply_episodes, create_rule
from storage.registry import ensure_series, register_device


def _run(conn: psycopg.Connection, title: str) -> list[dict]:
    (panel,) = [p for p in alarms().panels if p.title == title]
    end = datetime.now(timezone.utc)
    sql = expand_macros(panel.queries[0].sql, start=end - timedelta(days=2), end=end, interval="1h")
    cur = conn.execute(sql)
    names = [c.name for c in cur.description]
    assert set(panel.queries[0].columns) <= set(names)
    return [dict(zip(names, row)) for row in cur.fetchall()]


def test_alarm_count_and_active_alarms(database: str) -> None:
    now_us = int(datetime.now(timezone.utc).timestamp() * 1e6)
    with psycopg.connect(database) as conn:
        register_device(conn, org="city", device="air-1")
        ids = ensure_series(conn, [("city", "air-1", q, "ug/m3") for q in ("pm2_5", "pm10", "no2")])
        rules = [create_rule(conn, org="city", name=q, series_id=ids[("city", "air-1", q)], on=25.0, severity=sev)
                 for q, sev in (("pm2_5", "critical"), ("pm10", "warning"), ("no2", "warning"))]
        changed = apply_episodes(conn, [Episode(r.id, now_us - 3_600_000_000, 30.0, True) for r in rules])
        acknowledge_alarm(conn, org="city", alarm_id=changed[1][0], by="city/key", comment="on it")
        apply_episodes(conn, [Episode(rules[2].id, now_us, 10.0, False)])  # no2 cleared
        (counts,) = _run(conn, "Alarm count")
        assert counts == {"active": 2, "unacknowledged": 1, "critical": 1, "warning": 1, "info": 0}
        active = _run(conn, "Active alarms")
        assert [(a["rule"], a["state"], a["device"]) for a in active] == [
            ("pm2_5", "open", "air-1"), ("pm10", "acknowledged", "air-1")]
        opened = _run(conn, "Alarms opened by kind")
        assert sum(r["value"] for r in opened) == 3 and {r["metric"] for r in opened} == {"threshold"}
