"""Fleet health: devices online and offline, last seen, gateway buffer depth, dead letters;
and from Prometheus: ingest's throughput, lag, queue, commit latency and broker connection,
the components' state and restarts, the API's requests."""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, PromQuery, Query, Row
from storage.console import AREA_SQL

__all__ = ["API_METRICS", "INGEST_METRICS", "OFFLINE_AFTER", "fleet_health"]

# What ingest exports on CITYLAB_INGEST_METRICS_PORT and the API on /metrics (families
# as prometheus-client names them: a counter `x` is scraped as `x_total`).
INGEST_METRICS = ("citylab_packs_received", "citylab_packs_stored", "citylab_packs_duplicate",
                  "citylab_packs_dead_lettered", "citylab_readings_stored", "citylab_ingest_lag_seconds",
                  "citylab_ingest_queue_depth", "citylab_commit_seconds", "citylab_broker_connected")
API_METRICS = ("citylab_http_requests", "citylab_http_request_seconds", "citylab_component_up",
               "citylab_component_restarts")

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

_RATE = "5m"
_PACKS_RATE = (
    PromQuery(f"sum(rate(citylab_packs_received_total[{_RATE}]))", ("citylab_packs_received",), "received"),
    PromQuery(f"sum(rate(citylab_packs_stored_total[{_RATE}]))", ("citylab_packs_stored",), "stored"),
    PromQuery(f"sum(rate(citylab_packs_duplicate_total[{_RATE}]))", ("citylab_packs_duplicate",), "duplicate"),
    PromQuery(f"sum by (reason) (rate(citylab_packs_dead_lettered_total[{_RATE}]))",
              ("citylab_packs_dead_lettered",), "dead letter: {{reason}}"),
)
_READINGS_RATE = (PromQuery(f"sum(rate(citylab_readings_stored_total[{_RATE}]))", ("citylab_readings_stored",),
                            "readings stored"),)
_LAG = (PromQuery("max by (instance) (citylab_ingest_lag_seconds)", ("citylab_ingest_lag_seconds",),
                  "{{instance}}"),)
_QUEUE = (PromQuery("sum by (instance) (citylab_ingest_queue_depth)", ("citylab_ingest_queue_depth",),
                    "{{instance}}"),)
_COMMIT = tuple(
    PromQuery(f"histogram_quantile({q}, sum by (le) (rate(citylab_commit_seconds_bucket[{_RATE}])))",
              ("citylab_commit_seconds",), f"p{round(q * 100)}")
    for q in (0.5, 0.95, 0.99)
)
_BROKER = (PromQuery("min by (instance) (citylab_broker_connected)", ("citylab_broker_connected",),
                     "{{instance}}"),)
_COMPONENTS = (PromQuery("min by (component) (citylab_component_up)", ("citylab_component_up",), "{{component}}"),)
_RESTARTS = (PromQuery("sum by (component) (increase(citylab_component_restarts_total[1h]))",
                       ("citylab_component_restarts",), "{{component}}"),)
_REQUESTS = (PromQuery(f"sum by (status) (rate(citylab_http_requests_total[{_RATE}]))",
                       ("citylab_http_requests",), "{{status}}"),)
_UP_DOWN = ({"matcher": {"id": "byType", "options": "number"}, "properties": [
    {"id": "mappings", "value": [{"type": "value", "options": {"0": {"text": "down", "color": "red", "index": 0},
                                                               "1": {"text": "up", "color": "green", "index": 1}}}]},
]},)

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
            Row("Operations (Prometheus)"),
            Panel("Components up", "stat", _COMPONENTS, width=12, height=5,
                  description="Database, broker and ingest as the API's /health probes them, and every process "
                              "`citylab up` supervises.",
                  options={"colorMode": "background", "textMode": "value_and_name",
                           "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
                  overrides=_UP_DOWN),
            Panel("Restarts in the last hour", "bargauge", _RESTARTS, width=12, height=5,
                  description="Restarts by the lab's supervisor (backoff, budget over a sliding window).",
                  options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                           "displayMode": "gradient", "orientation": "horizontal"}),
            Panel("Packs per second", "timeseries", _PACKS_RATE, width=12, unit="pps",
                  description="Received = stored + dead-lettered; duplicates are redeliveries stored once."),
            Panel("Readings stored per second", "timeseries", _READINGS_RATE, width=12, unit="rps"),
            Panel("Ingest lag", "timeseries", _LAG, width=8, unit="s",
                  description="From a pack's arrival to its commit, per ingest worker."),
            Panel("Ingest queue depth", "timeseries", _QUEUE, width=8,
                  description="Messages received and not yet committed (bounded: back-pressure beyond it)."),
            Panel("Commit latency", "timeseries", _COMMIT, width=8, unit="s"),
            Panel("Ingest connected to the broker", "stat", _BROKER, width=12, height=5,
                  options={"colorMode": "background", "textMode": "value_and_name",
                           "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
                  overrides=_UP_DOWN),
            Panel("API requests per second by status", "timeseries", _REQUESTS, width=12, height=5, unit="reqps"),
        ),
    )
