"""Anomalies: a timeline by kind and tables by series and kind."""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, Query, Row

__all__ = ["anomalies"]

_TIMELINE = Query("""
    SELECT $__timeGroupAlias(a.time, $__interval), a.kind AS metric, count(*) AS value
    FROM anomalies a
    WHERE $__timeFilter(a.time)
    GROUP BY 1, 2
    ORDER BY 1
""", ("time", "metric", "value"))

_SCORES = Query("""
    SELECT a.time AS time, s.device || ' ' || s.quantity || ' (' || a.kind || ')' AS metric, a.score AS value
    FROM anomalies a JOIN series s ON s.id = a.series_id
    WHERE $__timeFilter(a.time)
    ORDER BY 1
    LIMIT 5000
""", ("time", "metric", "value"))

_BY_SERIES = Query("""
    SELECT s.device, s.quantity, a.kind, count(*) AS anomalies, max(a.score) AS max_score,
           min(a.time) AS first, max(a.time) AS last
    FROM anomalies a JOIN series s ON s.id = a.series_id
    WHERE $__timeFilter(a.time)
    GROUP BY s.device, s.quantity, a.kind
    ORDER BY anomalies DESC, s.device, s.quantity
""", ("device", "quantity", "kind", "anomalies", "max_score", "first", "last"), format="table")

_BY_KIND = Query("""
    SELECT a.kind, count(*) AS anomalies
    FROM anomalies a
    WHERE $__timeFilter(a.time)
    GROUP BY a.kind
    ORDER BY a.kind
""", ("kind", "anomalies"), format="table")

_RECENT = Query("""
    SELECT a.time, s.device, s.quantity, s.unit, a.kind, a.value, a.score
    FROM anomalies a JOIN series s ON s.id = a.series_id
    WHERE $__timeFilter(a.time)
    ORDER BY a.time DESC
    LIMIT 200
""", ("time", "device", "quantity", "unit", "kind", "value", "score"), format="table")


def anomalies() -> Dashboard:
    return Dashboard(
        uid="citylab-anomalies",
        title="Anomalies",
        description="Readings flagged by the stream detectors: when, where and of which kind",
        items=(
            Row("Timeline"),
            Panel("Anomalies by kind", "timeseries", (_TIMELINE,), width=16,
                  options={"legend": {"displayMode": "list", "placement": "bottom"}}),
            Panel("Share by kind", "piechart", (_BY_KIND,), width=8,
                  options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "/^anomalies$/", "values": True},
                           "pieType": "donut", "displayLabels": ["name", "value"]}),
            Panel("Scores of flagged readings", "timeseries", (_SCORES,), width=24, unit="percentunit",
                  options={"legend": {"showLegend": False}}),
            Row("Tables"),
            Panel("By series and kind", "table", (_BY_SERIES,), width=12, height=10),
            Panel("Most recent", "table", (_RECENT,), width=12, height=10),
        ),
    )
