"""City overview: air quality, noise, temperature and energy by area, with a map.

An *area* is the gateway a sensor reports through (see `storage.console`, whose
placement expressions the map shares with the lab console).
"""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, Query, Row
from storage.console import AREA_SQL, LAT_SQL, LON_SQL

__all__ = ["city_overview"]


def _by_area(quantity: str) -> Query:
    """Mean of one quantity per area, from the 1-minute aggregates, in Grafana's interval."""
    return Query(f"""
        SELECT $__timeGroupAlias(a.bucket, $__interval), {AREA_SQL} AS metric,
               sum(a.sum) / sum(a.count) AS value
        FROM aggregates a
        JOIN series s ON s.id = a.series_id
        JOIN devices d ON d.org = s.org AND d.device = s.device
        WHERE a.width_s = 60 AND a.count > 0 AND s.quantity = '{quantity}' AND $__timeFilter(a.bucket)
        GROUP BY 1, 2
        ORDER BY 1
    """, ("time", "metric", "value"))


_MAP = Query(f"""
    SELECT d.device, {AREA_SQL} AS area, d.kind, {LAT_SQL} AS latitude, {LON_SQL} AS longitude,
           (SELECT sum(a.sum) / sum(a.count) FROM aggregates a JOIN series s ON s.id = a.series_id
            WHERE s.org = d.org AND s.device = d.device AND s.quantity = 'pm2_5' AND a.width_s = 60 AND a.count > 0
              AND $__timeFilter(a.bucket)) AS pm2_5,
           (SELECT max(a.last_time) FROM aggregates a JOIN series s ON s.id = a.series_id
            WHERE s.org = d.org AND s.device = d.device AND a.width_s = 60 AND $__timeFilter(a.bucket)) AS last_seen
    FROM devices d
    ORDER BY d.device
""", ("device", "area", "kind", "latitude", "longitude", "pm2_5", "last_seen"), format="table")

_AREA_TABLE = Query(f"""
    SELECT {AREA_SQL} AS area, s.quantity, s.unit, count(DISTINCT s.id) AS series,
           sum(a.sum) / sum(a.count) AS mean, min(a.min) AS min, max(a.max) AS max
    FROM aggregates a
    JOIN series s ON s.id = a.series_id
    JOIN devices d ON d.org = s.org AND d.device = s.device
    WHERE a.width_s = 60 AND a.count > 0 AND $__timeFilter(a.bucket)
      AND s.quantity IN ('pm2_5', 'pm10', 'no2', 'noise', 'temperature', 'power', 'energy')
    GROUP BY 1, 2, 3
    ORDER BY 1, 2
""", ("area", "quantity", "unit", "series", "mean", "min", "max"), format="table")

_GEOMAP_OPTIONS = {
    "view": {"id": "coords", "lat": 58.97, "lon": 5.73, "zoom": 12},
    "controls": {"showZoom": True, "mouseWheelZoom": True},
    "basemap": {"type": "default", "name": "Basemap"},
    "layers": [{
        "type": "markers",
        "name": "Sensors",
        "location": {"mode": "coords", "latitude": "latitude", "longitude": "longitude"},
        "config": {"showLegend": True, "style": {
            "color": {"field": "pm2_5", "fixed": "dark-green"},
            "size": {"fixed": 6},
            "text": {"field": "device", "mode": "field"},
        }},
        "tooltip": True,
    }],
    "tooltip": {"mode": "details"},
}


def city_overview() -> Dashboard:
    return Dashboard(
        uid="citylab-city-overview",
        title="City overview",
        description="Air quality, noise, temperature and energy by area, and where the sensors are",
        items=(
            Row("Environment by area"),
            Panel("PM2.5 by area", "timeseries", (_by_area("pm2_5"),), unit="conμgm3",
                  description="Mean PM2.5 of the area's air sensors and LoRa nodes (1-minute aggregates)."),
            Panel("NO₂ by area", "timeseries", (_by_area("no2"),), unit="conμgm3"),
            Panel("Noise by area", "timeseries", (_by_area("noise"),), unit="dB"),
            Panel("Temperature by area", "timeseries", (_by_area("temperature"),), unit="celsius"),
            Row("Energy"),
            Panel("Power by area", "timeseries", (_by_area("power"),), unit="watt"),
            Panel("Energy by area", "timeseries", (_by_area("energy"),), unit="kwatth"),
            Row("Map"),
            Panel("Sensors (colour: PM2.5)", "geomap", (_MAP,), width=14, height=12, options=_GEOMAP_OPTIONS),
            Panel("By area and quantity", "table", (_AREA_TABLE,), width=10, height=12),
        ),
    )
