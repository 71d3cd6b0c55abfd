"""Provider data quality: completeness, freshness and anomaly rate per data product.

Computed from the data: *completeness* is readings against the declared interval
(or the share of minutes with a reading, without one) since a series' first
reading in the range,
*freshness* the age of its newest reading, the *anomaly rate* flagged readings per
reading (the definitions of the API's quality reports, over the dashboard's time
range). A data product is a set of a provider's series (`data_product_series`);
the provider table covers every series, products or not.
"""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, Query, Row

__all__ = ["data_quality"]

# Per series in the range: readings (from the 1-minute aggregates), minutes with data,
# first bucket, newest reading, declared interval. Completeness follows the API's
# quality report: readings / (covered seconds / declared interval), capped at 1; a
# series without a declared interval counts its minutes with data instead.
_PER_SERIES = """
    SELECT s.id, d.org AS provider, s.device, s.quantity, s.interval_s,
           sum(a.count) AS readings, count(*) AS minutes_with_data, min(a.bucket) AS first_bucket,
           max(a.last_time) AS newest
    FROM aggregates a
    JOIN series s ON s.id = a.series_id
    JOIN devices d ON d.org = s.org AND d.device = s.device
    WHERE a.width_s = 60 AND a.count > 0 AND $__timeFilter(a.bucket)
    GROUP BY s.id, d.org, s.device, s.quantity, s.interval_s
"""
_FLAGGED = """
    SELECT series_id, count(*) AS n FROM anomalies WHERE $__timeFilter(time) GROUP BY series_id
"""
_COVERED_S = "greatest(1.0, extract(epoch FROM least(now(), $__timeTo()) - p.first_bucket))"
_COMPLETENESS = (
    f"least(1.0, CASE WHEN p.interval_s IS NOT NULL THEN p.readings / ({_COVERED_S} / p.interval_s)"
    f" ELSE p.minutes_with_data / ceil({_COVERED_S} / 60.0) END)"
)

_PRODUCTS = Query(f"""
    WITH p AS ({_PER_SERIES}), f AS ({_FLAGGED})
    SELECT dp.title AS product, o.slug AS provider, dp.licence, count(p.id) AS series,
           coalesce(sum(p.readings), 0) AS readings,
           avg({_COMPLETENESS}) AS completeness,
           extract(epoch FROM now() - max(p.newest)) AS freshness_s,
           coalesce(sum(f.n), 0)::double precision / nullif(sum(p.readings), 0) AS anomaly_rate
    FROM data_products dp
    JOIN organisations o ON o.id = dp.org_id
    JOIN data_product_series ps ON ps.product_id = dp.id
    LEFT JOIN p ON p.id = ps.series_id
    LEFT JOIN f ON f.series_id = ps.series_id
    GROUP BY dp.id, dp.title, o.slug, dp.licence
    ORDER BY completeness NULLS FIRST, dp.title
""", ("product", "provider", "licence", "series", "readings", "completeness", "freshness_s", "anomaly_rate"),
    format="table")

_PROVIDERS = Query(f"""
    WITH p AS ({_PER_SERIES}), f AS ({_FLAGGED})
    SELECT p.provider, count(*) AS series, sum(p.readings) AS readings,
           avg({_COMPLETENESS}) AS completeness,
           extract(epoch FROM now() - max(p.newest)) AS freshness_s,
           coalesce(sum(f.n), 0)::double precision / nullif(sum(p.readings), 0) AS anomaly_rate
    FROM p LEFT JOIN f ON f.series_id = p.id
    GROUP BY p.provider
    ORDER BY p.provider
""", ("provider", "series", "readings", "completeness", "freshness_s", "anomaly_rate"), format="table")

_SERIES = Query(f"""
    WITH p AS ({_PER_SERIES}), f AS ({_FLAGGED})
    SELECT p.provider, p.device, p.quantity, p.interval_s, p.readings,
           {_COMPLETENESS} AS completeness,
           extract(epoch FROM now() - p.newest) AS freshness_s,
           coalesce(f.n, 0)::double precision / nullif(p.readings, 0) AS anomaly_rate
    FROM p LEFT JOIN f ON f.series_id = p.id
    ORDER BY completeness, p.device, p.quantity
""", ("provider", "device", "quantity", "interval_s", "readings", "completeness", "freshness_s", "anomaly_rate"),
    format="table")

_READINGS = Query("""
    SELECT $__timeGroupAlias(a.bucket, $__interval), d.org AS metric, sum(a.count) AS value
    FROM aggregates a
    JOIN series s ON s.id = a.series_id
    JOIN devices d ON d.org = s.org AND d.device = s.device
    WHERE a.width_s = 60 AND $__timeFilter(a.bucket)
    GROUP BY 1, 2
    ORDER BY 1
""", ("time", "metric", "value"))

_ANOMALY_RATE = Query("""
    WITH r AS (
        SELECT $__timeGroupAlias(a.bucket, $__interval), d.org, sum(a.count) AS readings
        FROM aggregates a JOIN series s ON s.id = a.series_id JOIN devices d ON d.org = s.org AND d.device = s.device
        WHERE a.width_s = 60 AND $__timeFilter(a.bucket)
        GROUP BY 1, 2
    ), f AS (
        SELECT $__timeGroupAlias(an.time, $__interval), d.org, count(*) AS flagged
        FROM anomalies an JOIN series s ON s.id = an.series_id JOIN devices d ON d.org = s.org AND d.device = s.device
        WHERE $__timeFilter(an.time)
        GROUP BY 1, 2
    )
    SELECT r.time, r.org AS metric, coalesce(f.flagged, 0)::double precision / nullif(r.readings, 0) AS value
    FROM r LEFT JOIN f ON f.time = r.time AND f.org = r.org
    ORDER BY 1
""", ("time", "metric", "value"))

_PERCENT = {"custom.cellOptions": {"type": "gauge", "mode": "basic"}, "min": 0, "max": 1, "unit": "percentunit"}
_OVERRIDES = tuple(
    {"matcher": {"id": "byName", "options": name},
     "properties": [{"id": key, "value": value} for key, value in props.items()]}
    for name, props in (("completeness", _PERCENT), ("anomaly_rate", {"unit": "percentunit"}),
                        ("freshness_s", {"unit": "s"}))
)


def data_quality() -> Dashboard:
    return Dashboard(
        uid="citylab-data-quality",
        title="Provider data quality",
        description="Completeness, freshness and anomaly rate per data product, computed from the data",
        time_from="now-24h",
        items=(
            Row("Per data product"),
            Panel("Quality per data product", "table", (_PRODUCTS,), width=24, height=8, overrides=_OVERRIDES),
            Panel("Quality per provider (all its series)", "table", (_PROVIDERS,), width=24, height=6,
                  overrides=_OVERRIDES),
            Panel("Readings per provider", "timeseries", (_READINGS,), width=12),
            Panel("Anomaly rate per provider", "timeseries", (_ANOMALY_RATE,), width=12, unit="percentunit"),
            Row("Per series"),
            Panel("Quality per series", "table", (_SERIES,), width=24, height=12, overrides=_OVERRIDES),
        ),
    )
