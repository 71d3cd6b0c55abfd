"""Alarms: how many are open (by severity), how many opened over time (by kind), and the open
ones with their rule, subject and age. The alarms of every organisation: Grafana is the lab's
operations view."""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, Query, Row

__all__ = ["alarms"]

_OPEN_COUNTS = Query("""
    SELECT count(*) FILTER (WHERE a.state <> 'cleared') AS active,
           count(*) FILTER (WHERE a.state = 'open') AS unacknowledged,
           count(*) FILTER (WHERE a.state <> 'cleared' AND r.severity = 'critical') AS critical,
           count(*) FILTER (WHERE a.state <> 'cleared' AND r.severity = 'warning') AS warning,
           count(*) FILTER (WHERE a.state <> 'cleared' AND r.severity = 'info') AS info
    FROM alarms a JOIN alert_rules r ON r.id = a.rule_id
""", ("active", "unacknowledged", "critical", "warning", "info"), format="table")

_OPENED = Query("""
    SELECT $__timeGroupAlias(a.opened_at, $__interval), r.kind AS metric, count(*) AS value
    FROM alarms a JOIN alert_rules r ON r.id = a.rule_id
    WHERE $__timeFilter(a.opened_at)
    GROUP BY 1, 2
    ORDER BY 1
""", ("time", "metric", "value"))

_ACTIVE = Query("""
    SELECT a.opened_at, a.org, r.name AS rule, r.kind, r.severity, a.state,
           coalesce(a.device, s.device) AS device, s.quantity, a.open_value, a.hits,
           extract(epoch FROM now() - a.opened_at) AS open_s
    FROM alarms a JOIN alert_rules r ON r.id = a.rule_id LEFT JOIN series s ON s.id = a.series_id
    WHERE a.state <> 'cleared'
    ORDER BY r.severity = 'critical' DESC, a.opened_at DESC
    LIMIT 500
""", ("opened_at", "org", "rule", "kind", "severity", "state", "device", "quantity", "open_s"), format="table")

_SEVERITY_COLOURS = ({"matcher": {"id": "byName", "options": "critical"},
                      "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}]},
                     {"matcher": {"id": "byName", "options": "warning"},
                      "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "orange"}}]},
                     {"matcher": {"id": "byName", "options": "info"},
                      "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "blue"}}]})


def alarms() -> Dashboard:
    return Dashboard(
        uid="citylab-alarms",
        title="Alarms",
        description="Alarms of the alert rules: open and unacknowledged counts, openings by kind, the open ones",
        time_from="now-24h",
        items=(
            Row("Now"),
            Panel("Alarm count", "stat", (_OPEN_COUNTS,), width=24, height=5,
                  description="Active: open or acknowledged, not yet cleared; unacknowledged: open.",
                  options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                           "colorMode": "background", "textMode": "value_and_name"},
                  overrides=_SEVERITY_COLOURS),
            Panel("Alarms opened by kind", "timeseries", (_OPENED,), width=24,
                  options={"legend": {"displayMode": "list", "placement": "bottom"}}),
            Row("Open alarms"),
            Panel("Active alarms", "table", (_ACTIVE,), width=24, height=10),
        ),
    )
