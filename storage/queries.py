"""The read queries the API serves: series, raw readings, re-bucketed aggregates,
anomalies, the lab's status and the dead letters.

Every function takes an open `psycopg.Connection` and typed parameters; the SQL
is fixed text with bound parameters (never assembled from user strings) and each
statement is served by an index:

    list_series / get_series     series primary key
    read_readings                readings (series_id, time)
    read_aggregates              aggregates primary key (width_s, series_id, bucket)
    read_anomalies               anomalies (series_id, time), or (time) for all series
    lab_status / org_status      readings (series_id, time), one probe per series
    dead_letters                 dead_letters (received_at), or (org, received_at)

Results are frozen dataclasses of plain values. psycopg errors leave as
`StorageError` / `DatabaseUnavailable` (see `storage.errors`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from storage.db import engine_of
from storage.errors import map_errors
from storage.products import READABLE_SERIES

__all__ = [
    "AggregateBucket",
    "Anomaly",
    "DeadLetter",
    "LabStatus",
    "Reading",
    "SeriesInfo",
    "dead_letters",
    "get_series",
    "lab_status",
    "org_status",
    "list_series",
    "ping",
    "read_aggregates",
    "read_anomalies",
    "read_readings",
    "CatalogueEntry",
    "LatestValue",
    "catalogue",
    "latest_values",
]


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    id: int
    device: str
    quantity: str
    unit: str | None
    provider: str      # the device's organisation (slug): (provider, device) names the device


@dataclass(frozen=True, slots=True)
class Reading:
    time: datetime
    value: float


@dataclass(frozen=True, slots=True)
class AggregateBucket:
    bucket: datetime   # start of the bucket
    count: int
    mean: float
    min: float
    max: float
    last: float        # the value with the latest time in the bucket
    std: float         # population standard deviation


@dataclass(frozen=True, slots=True)
class Anomaly:
    time: datetime
    series_id: int
    device: str
    quantity: str
    value: float
    score: float
    kind: str


@dataclass(frozen=True, slots=True)
class LabStatus:
    packs_received: int
    packs_stored: int
    packs_dead_lettered: int
    packs_duplicate: int
    readings_stored: int
    dead_letters: int                 # rows in the dead-letter table
    devices: int
    series: int
    newest_reading: datetime | None   # latest reading time over all series (of the org)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    received_at: datetime
    topic: str
    device: str | None
    reason: str
    detail: str
    payload: bytes


def ping(conn: psycopg.Connection) -> None:
    """Round-trip to the server; raises DatabaseUnavailable when it cannot."""
    with map_errors("ping"):
        conn.execute("SELECT 1").fetchone()


# Series ----------------------------------------------------------------------

_SERIES = "SELECT id, device, quantity, unit, org FROM series"


def list_series(conn: psycopg.Connection) -> list[SeriesInfo]:
    with map_errors("list series"):
        rows = conn.execute(_SERIES + " ORDER BY id").fetchall()
    return [SeriesInfo(*row) for row in rows]


def get_series(conn: psycopg.Connection, series_id: int) -> SeriesInfo | None:
    with map_errors("get series"):
        row = conn.execute(_SERIES + " WHERE id = %s", (series_id,)).fetchone()
    return SeriesInfo(*row) if row else None


# Readings --------------------------------------------------------------------


def read_readings(
    conn: psycopg.Connection, series_id: int, start: datetime, end: datetime, *, limit: int, skip: int = 0
) -> list[Reading]:
    """Readings of one series in [start, end), oldest first (ties by value), at
    most `limit`, leaving out the first `skip` (a cursor resumes at the time of
    the last reading served, skipping those at that time already served)."""
    with map_errors("read readings"):
        rows = conn.execute(
            "SELECT time, value FROM readings"
            " WHERE series_id = %s AND time >= %s AND time < %s"
            " ORDER BY time, value OFFSET %s LIMIT %s",
            (series_id, start, end, skip, limit),
        ).fetchall()
    return [Reading(time, value) for time, value in rows]


# Catalogue -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    id: int
    device: str
    quantity: str
    unit: str | None
    provider: str          # the device's organisation (slug)
    lat: float | None
    lon: float | None
    interval_s: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True, slots=True)
class LatestValue:
    series_id: int
    device: str
    quantity: str
    unit: str | None
    time: datetime
    value: float


def catalogue(
    conn: psycopg.Connection,
    *,
    org_id: int,
    org_slug: str,
    quantity: str | None = None,
    provider: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    product_id: int | None = None,
    after: int = 0,
    limit: int = 1000,
) -> list[CatalogueEntry]:
    """The series `org` may read, by id after `after`, filtered by quantity,
    provider slug, bounding box (min_lon, min_lat, max_lon, max_lat) of the
    device's location, and data product."""
    min_lon, min_lat, max_lon, max_lat = bbox if bbox else (None, None, None, None)
    with map_errors("series catalogue"):
        rows = conn.execute(
            "SELECT s.id, s.device, s.quantity, s.unit, d.org, d.lat, d.lon, s.interval_s, s.low, s.high"
            " FROM series s JOIN devices d ON d.org = s.org AND d.device = s.device"
            " WHERE s.id IN (" + READABLE_SERIES + ") AND s.id > %(after)s"
            " AND (%(quantity)s::text IS NULL OR s.quantity = %(quantity)s)"
            " AND (%(provider)s::text IS NULL OR d.org = %(provider)s)"
            " AND (%(min_lon)s::float8 IS NULL OR (d.lon BETWEEN %(min_lon)s AND %(max_lon)s"
            "      AND d.lat BETWEEN %(min_lat)s AND %(max_lat)s))"
            " AND (%(product)s::bigint IS NULL OR s.id IN"
            "      (SELECT series_id FROM data_product_series WHERE product_id = %(product)s))"
            " ORDER BY s.id LIMIT %(limit)s",
            {"org_id": org_id, "org_slug": org_slug, "after": after, "quantity": quantity, "provider": provider,
             "min_lon": min_lon, "min_lat": min_lat, "max_lon": max_lon, "max_lat": max_lat,
             "product": product_id, "limit": limit},
        ).fetchall()
    return [CatalogueEntry(*row) for row in rows]


def latest_values(conn: psycopg.Connection, series_ids: list[int]) -> list[LatestValue]:
    """The newest reading of each series that has one (one index probe per series)."""
    with map_errors("latest values"):
        rows = conn.execute(
            "SELECT s.id, s.device, s.quantity, s.unit, l.time, l.value FROM series s"
            " CROSS JOIN LATERAL (SELECT r.time, r.value FROM readings r WHERE r.series_id = s.id"
            "                     ORDER BY r.time DESC LIMIT 1) l"
            " WHERE s.id = ANY(%s) ORDER BY s.id",
            (series_ids,),
        ).fetchall()
    return [LatestValue(*row) for row in rows]


# Aggregates ------------------------------------------------------------------

_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


def _bucket_expr(column: str, engine: str) -> sql.Composable:
    """The start of the bucket holding `column`, for buckets of width
    `%(bucket_width)s` (an interval parameter) aligned to `%(bucket_origin)s` (the Unix epoch).

    The one place that knows the engine: `time_bucket` on TimescaleDB (with the
    explicit origin: its default, 2000-01-03, is not epoch-aligned for widths such
    as 7 days), `date_bin` (PostgreSQL 14+) otherwise.
    """
    if engine == "timescaledb":
        return sql.SQL("time_bucket(%(bucket_width)s, {}, origin => %(bucket_origin)s)").format(
            sql.Identifier(column))
    return sql.SQL("date_bin(%(bucket_width)s, {}, %(bucket_origin)s)").format(sql.Identifier(column))


def read_aggregates(
    conn: psycopg.Connection,
    series_id: int,
    start: datetime,
    end: datetime,
    *,
    bucket_s: int,
    width_s: int = 60,
) -> list[AggregateBucket]:
    """The stored `width_s` aggregates with bucket start in [start, end), merged
    into buckets of `bucket_s` seconds (a positive multiple of `width_s`).

    count, sum, min and max combine directly; `last` is the one with the latest
    `last_time`; the second moment combines exactly (parallel variance):

        mean = Σ sum_i / Σ n_i
        M2   = Σ (m2_i + n_i · (mean_i − mean)²)
        std  = sqrt(M2 / Σ n_i)                      (population)
    """
    if width_s <= 0 or bucket_s <= 0 or bucket_s % width_s:
        raise ValueError(f"bucket_s ({bucket_s}) must be a positive multiple of width_s ({width_s})")
    query = sql.SQL(
        """
        WITH binned AS (
            SELECT {bucket} AS b, count, sum, min, max, last, last_time, m2
            FROM aggregates
            WHERE width_s = %(width_s)s AND series_id = %(series_id)s
              AND bucket >= %(start)s AND bucket < %(end)s AND count > 0
        ), parts AS (
            SELECT binned.*,
                   sum(sum) OVER (PARTITION BY b) / sum(count) OVER (PARTITION BY b) AS b_mean
            FROM binned
        )
        SELECT b,
               sum(count)::bigint,
               sum(sum) / sum(count)::double precision,
               min(min),
               max(max),
               (array_agg(last ORDER BY last_time DESC))[1],
               sqrt(greatest(
                   sum(m2 + count * (sum / count - b_mean) * (sum / count - b_mean)), 0
               ) / sum(count)::double precision)
        FROM parts
        GROUP BY b
        ORDER BY b
        """
    ).format(bucket=_bucket_expr("bucket", engine_of(conn)))
    with map_errors("read aggregates"):
        rows = conn.execute(
            query,
            {
                "width_s": width_s,
                "series_id": series_id,
                "start": start,
                "end": end,
                "bucket_width": timedelta(seconds=bucket_s),
                "bucket_origin": _EPOCH,
            },
        ).fetchall()
    return [AggregateBucket(*row) for row in rows]


# Anomalies -------------------------------------------------------------------

_ANOMALIES = (
    "SELECT a.time, a.series_id, s.device, s.quantity, a.value, a.score, a.kind"
    " FROM anomalies a JOIN series s ON s.id = a.series_id"
)


def read_anomalies(
    conn: psycopg.Connection,
    start: datetime,
    end: datetime,
    *,
    series_id: int | None = None,
    series_ids: list[int] | None = None,
    limit: int,
) -> list[Anomaly]:
    """Anomalies in [start, end), oldest first, of one series, of `series_ids`, or of all."""
    with map_errors("read anomalies"):
        if series_id is None and series_ids is not None:
            cur = conn.execute(
                _ANOMALIES + " WHERE a.series_id = ANY(%s) AND a.time >= %s AND a.time < %s"
                " ORDER BY a.time, a.series_id LIMIT %s",
                (series_ids, start, end, limit),
            )
        elif series_id is None:
            cur = conn.execute(
                _ANOMALIES + " WHERE a.time >= %s AND a.time < %s ORDER BY a.time, a.series_id LIMIT %s",
                (start, end, limit),
            )
        else:
            cur = conn.execute(
                _ANOMALIES + " WHERE a.series_id = %s AND a.time >= %s AND a.time < %s ORDER BY a.time LIMIT %s",
                (series_id, start, end, limit),
            )
        rows = cur.fetchall()
    return [Anomaly(*row) for row in rows]


# Status ----------------------------------------------------------------------

_COUNTERS = ("packs_received", "packs_stored", "packs_dead_lettered", "packs_duplicate", "readings_stored")


def _status(row: tuple) -> LabStatus:
    counters, n_dead, n_devices, n_series, newest = row
    return LabStatus(
        *(int(counters.get(name, 0)) for name in _COUNTERS),
        dead_letters=n_dead,
        devices=n_devices,
        series=n_series,
        newest_reading=newest,
    )


def lab_status(conn: psycopg.Connection) -> LabStatus:
    """Ingest counters, table sizes and the newest reading, in one statement
    (so one snapshot)."""
    with map_errors("read lab status"):
        row = conn.execute(
            """
            SELECT
                (SELECT coalesce(jsonb_object_agg(name, value), '{}'::jsonb) FROM ingest_counters),
                (SELECT count(*) FROM dead_letters),
                (SELECT count(*) FROM devices),
                (SELECT count(*) FROM series),
                -- one index probe per series instead of a scan of all readings
                (SELECT max(newest.time) FROM series s CROSS JOIN LATERAL (
                     SELECT r.time FROM readings r WHERE r.series_id = s.id
                     ORDER BY r.time DESC LIMIT 1) newest)
            """
        ).fetchone()
    return _status(row)


def org_status(conn: psycopg.Connection, org: str) -> LabStatus:
    """What `lab_status` says, for one organisation's devices, series, packs and
    dead letters only (its counters are kept per organisation by ingest)."""
    with map_errors("read organisation status"):
        row = conn.execute(
            """
            SELECT
                (SELECT coalesce(jsonb_object_agg(name, value), '{}'::jsonb) FROM ingest_org_counters
                 WHERE org = %(org)s),
                (SELECT count(*) FROM dead_letters WHERE org = %(org)s),
                (SELECT count(*) FROM devices WHERE org = %(org)s),
                (SELECT count(*) FROM series WHERE org = %(org)s),
                (SELECT max(newest.time) FROM series s CROSS JOIN LATERAL (
                     SELECT r.time FROM readings r WHERE r.series_id = s.id
                     ORDER BY r.time DESC LIMIT 1) newest
                 WHERE s.org = %(org)s)
            """,
            {"org": org},
        ).fetchone()
    return _status(row)


# Dead letters ----------------------------------------------------------------


def dead_letters(conn: psycopg.Connection, *, limit: int, org: str | None = None) -> list[DeadLetter]:
    """The newest dead letters first: of the lab, or of one organisation."""
    with map_errors("read dead letters"):
        rows = conn.execute(
            "SELECT id, received_at, topic, device, reason, detail, payload FROM dead_letters"
            " WHERE (%(org)s::text IS NULL OR org = %(org)s)"
            " ORDER BY received_at DESC, id DESC LIMIT %(limit)s",
            {"org": org, "limit": limit},
        ).fetchall()
    return [DeadLetter(id, at, topic, device, reason, detail, bytes(payload))
            for id, at, topic, device, reason, detail, payload in rows]


def table_sizes(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(table, human-readable total size) of citylab's tables, largest first."""
    with map_errors("table sizes"):
        return conn.execute(
            "SELECT c.relname, pg_size_pretty(pg_total_relation_size(c.oid))"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
            " ORDER BY pg_total_relation_size(c.oid) DESC, c.relname"
        ).fetchall()
