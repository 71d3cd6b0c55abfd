"""Fleet health: devices online and offline, last seen, gateway buffer depth, dead letters."""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, Query, Row
from storage.console import AREA_SQL

__all__ = ["OFFLINE_AFTER", "fleet_health"]

OFFLINE_AFTER = "5 minutes"  # a device with nothing newer is offline

# Last sign of life per device: its newest reading (one index probe per series) or,
# for a gateway, its newest status message while online.
_LAST_SEEN = f"""
    SELECT d.device, d.kind, d.gateway, {AREA_SQL} AS area, d.enabled, g.state, g.buffer_depth,
           greatest(
               (SELECT max(newest.time) FROM series s CROSS JOIN LATERAL (
                    SELECT r.time FROM readings r WHERE r.series_id = s.id ORDER BY r.time DESC LIMIT 1) newest
                WHERE s.org = d.org AND s.device = d.device),
               CASE WHEN g.state = 'online' THEN g.reported_at END) AS last_seen
    FROM devices d LEFT JOIN gateway_status g ON g.org = d.org AND g.device = d.device
"""

_COUNTS = Query(f"""
    WITH seen AS ({_LAST_SEEN})
    SELECT count(*) FILTER (WHERE last_seen > now() - interval '{OFFLINE_AFTER}') AS online,
           count(*) FILTER (WHERE last_seen IS NULL OR last_seen <= now() - interval '{OFFLINE_AFTER}') AS offline
    FROM seen
""", ("online", "offline"), format="table")

_DEVICES = Query(f"""
    WITH seen AS ({_LAST_SEEN})
    SELECT device, kind, gateway, area,
           CASE WHEN NOT enabled THEN 'disabled'
                WHEN last_seen > now() - interval '{OFFLINE_AFTER}' THEN 'online' ELSE 'offline' END AS status,
           last_seen, extract(epoch FROM now() - last_seen) AS silent_s
    FROM seen
    ORDER BY status DESC, last_seen NULLS FIRST, device
""", ("device", "kind", "gateway", "area", "status", "last_seen", "silent_s"), format="table")

_BUFFERS = Query("""
    SELECT device AS gateway, state, buffer_depth, reported_at, received_at
    FROM gateway_status
    ORDER BY device
""", ("gateway", "state", "buffer_depth", "reported_at"), format="table")

_DEAD_LETTERS = Query("""
    SELECT $__timeGroupAlias(received_at, $__interval), reason AS metric, count(*) AS value
    FROM dead_letters
    WHERE $__timeFilter(received_at)
    GROUP BY 1, 2
    ORDER BY 1
""", ("time", "metric", "value"))

_DEAD_LETTER_TABLE = Query("""
    SELECT reason, count(*) AS dead_letters, count(DISTINCT device) AS devices, max(received_at) AS last
    FROM dead_letters
    WHERE $__timeFilter(received_at)
    GROUP BY reason
    ORDER BY dead_letters DESC
""", ("reason", "dead_letters", "devices", "last"), format="table")

_PACKS = Query("""
    SELECT $__timeGroupAlias(stored_at, $__interval), count(*) FILTER (WHERE readings > 0) AS packs,
           sum(readings) AS readings
    FROM ingest_packs
    WHERE $__timeFilter(stored_at)
    GROUP BY 1
    ORDER BY 1
""", ("time", "packs", "readings"))

_COUNTERS = Query("""
    SELECT name, value FROM ingest_counters ORDER BY name
""", ("name", "value"), format="table")

_STATUS_COLOURS = ({"matcher": {"id": "byName", "options": "status"}, "properties": [
    {"id": "custom.cellOptions", "value": {"type": "color-background"}},
    {"id": "mappings", "value": [{"type": "value", "options": {
        "online": {"color": "green", "index": 0}, "offline": {"color": "red", "index": 1},
        "disabled": {"color": "gray", "index": 2}}}]},
]},)


def fleet_health() -> Dashboard:
    return Dashboard(
        uid="citylab-fleet-health",
        title="Fleet health",
        description=f"Devices online and offline (offline: nothing for {OFFLINE_AFTER}), gateway buffers, dead letters",
        time_from="now-1h",
        items=(
            Row("Devices"),
            Panel("Devices online / offline", "stat", (_COUNTS,), width=8, height=6,
                  options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                           "colorMode": "background", "textMode": "value_and_name"}),
            Panel("Gateway buffer depth", "bargauge", (_BUFFERS,), width=8, height=6,
                  description="Packs each gateway holds in its store-and-forward queue, not yet committed by the "
                              "platform (from the gateway's retained status message).",
                  options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "/^buffer_depth$/", "values": True},
                           "displayMode": "gradient", "orientation": "horizontal"}),
            Panel("Ingest counters", "table", (_COUNTERS,), width=8, height=6),
            Panel("Devices, last seen", "table", (_DEVICES,), width=24, height=10, overrides=_STATUS_COLOURS),
            Row("Ingest"),
            Panel("Dead letters by reason", "timeseries", (_DEAD_LETTERS,), width=12,
                  options={"legend": {"displayMode": "table", "placement": "right"}}),
            Panel("Dead letters, totals by reason", "table", (_DEAD_LETTER_TABLE,), width=12),
            Panel("Packs and readings stored", "timeseries", (_PACKS,), width=24),
        ),
    )
