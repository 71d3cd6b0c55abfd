"""What the public city page (/open) reads: the open products' series with their places,
latest values, providers and licences, and per-quantity aggregates across them.

Places are the console's (`storage.console.LAT_SQL` / `LON_SQL` / `AREA_SQL`): the
registered location, or the deterministic place of a device registered without one,
so the open page and the console's map agree. Series are joined to their devices by
(org, device).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from storage.console import AREA_SQL, LAT_SQL, LON_SQL
from storage.errors import map_errors

__all__ = ["OpenBucket", "OpenSeries", "open_quantity_buckets", "open_series"]


@dataclass(frozen=True, slots=True)
class OpenSeries:
    series_id: int
    device: str
    area: str
    quantity: str
    unit: str | None
    lat: float
    lon: float
    product_id: int          # the (first) open product holding it
    product_title: str
    product_title_nb: str
    provider: str            # the provider's name
    licence: str
    time: datetime | None    # the latest reading
    value: float | None


@dataclass(frozen=True, slots=True)
class OpenBucket:
    bucket: datetime
    count: int
    mean: float
    min: float
    max: float


def open_series(conn: psycopg.Connection) -> list[OpenSeries]:
    """Every series of an open product, by id, with its place and latest reading."""
    with map_errors("read open series"):
        rows = conn.execute(
            f"SELECT DISTINCT ON (s.id) s.id, s.device, {AREA_SQL}, s.quantity, s.unit, {LAT_SQL}, {LON_SQL},"
            " p.id, p.title, p.title_nb, o.name, p.licence, l.time, l.value"
            " FROM data_products p JOIN data_product_series ps ON ps.product_id = p.id"
            " JOIN series s ON s.id = ps.series_id JOIN devices d ON d.org = s.org AND d.device = s.device"
            " JOIN organisations o ON o.id = p.org_id"
            " LEFT JOIN LATERAL (SELECT r.time, r.value FROM readings r WHERE r.series_id = s.id"
            "                    ORDER BY r.time DESC LIMIT 1) l ON true"
            " WHERE p.open ORDER BY s.id, p.id"
        ).fetchall()
    return [OpenSeries(*row) for row in rows]


def open_quantity_buckets(
    conn: psycopg.Connection, *, series_ids: list[int], start: datetime, end: datetime, bucket_s: int, width_s: int,
) -> list[OpenBucket]:
    """The stored `width_s` aggregates of `series_ids` whose window starts in [start, end),
    merged across the series into buckets of `bucket_s` (aligned to the Unix epoch):
    count, mean (sum / count), min and max."""
    with map_errors("read open quantity buckets"):
        rows = conn.execute(
            "SELECT date_bin(make_interval(secs => %(bucket)s), a.bucket, timestamptz 'epoch') AS b,"
            " sum(a.count)::bigint, sum(a.sum) / nullif(sum(a.count), 0), min(a.min), max(a.max)"
            " FROM aggregates a WHERE a.width_s = %(width)s AND a.series_id = ANY(%(ids)s)"
            " AND a.bucket >= %(start)s AND a.bucket < %(end)s GROUP BY b HAVING sum(a.count) > 0 ORDER BY b",
            {"bucket": bucket_s, "width": width_s, "ids": series_ids, "start": start, "end": end},
        ).fetchall()
    return [OpenBucket(*row) for row in rows]
