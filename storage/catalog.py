"""What the DCAT-AP catalogue and the open-data faces read and keep.

    publishers / set_org_profile     organisations as publishers (organisation number, contact point)
    product_series                   the series of listed products, with place, interval and time coverage
    count_anonymous_request          the per-address request counter of keyless (open data) reads
    save_harvest / external_datasets the datasets harvested from other catalogues

Series are joined to their devices by (org, device).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from storage.errors import map_errors

__all__ = [
    "ExternalDataset",
    "HarvestSource",
    "ProductSeries",
    "Publisher",
    "count_anonymous_request",
    "external_datasets",
    "harvest_sources",
    "product_series",
    "publishers",
    "save_harvest",
    "set_org_profile",
]


@dataclass(frozen=True, slots=True)
class Publisher:
    id: int
    slug: str
    name: str
    kind: str                  # city | provider | research
    org_number: str | None     # national organisation number (Norway: nine digits)
    contact_email: str | None
    homepage: str | None


@dataclass(frozen=True, slots=True)
class ProductSeries:
    product_id: int
    series_id: int
    device: str
    quantity: str
    unit: str | None
    lat: float | None
    lon: float | None
    interval_s: float | None
    first: datetime | None     # oldest reading
    last: datetime | None      # newest reading


@dataclass(frozen=True, slots=True)
class HarvestSource:
    id: int
    url: str
    catalog_iri: str
    title: str
    description: str           # the source catalogue's own description, Turtle
    harvested_at: datetime


@dataclass(frozen=True, slots=True)
class ExternalDataset:
    id: int
    source_id: int
    source_url: str
    iri: str
    title: str
    publisher: str
    landing_page: str | None
    description: str           # the dataset's description as harvested, Turtle
    harvested_at: datetime


_PUBLISHER = "SELECT id, slug, name, kind, org_number, contact_email, homepage FROM organisations"


def publishers(conn: psycopg.Connection, *, org_ids: list[int] | None = None) -> list[Publisher]:
    """Organisations as publishers, by id: those of `org_ids`, or every one."""
    with map_errors("read publishers"):
        rows = conn.execute(
            _PUBLISHER + " WHERE %(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s) ORDER BY id", {"ids": org_ids}
        ).fetchall()
    return [Publisher(*row) for row in rows]


def set_org_profile(
    conn: psycopg.Connection, *, org_id: int, org_number: str | None, contact_email: str | None,
    homepage: str | None,
) -> Publisher:
    """Set what the catalogue says of an organisation (None clears a field)."""
    with map_errors("set organisation profile"):
        row = conn.execute(
            "UPDATE organisations SET org_number = %s, contact_email = %s, homepage = %s WHERE id = %s"
            " RETURNING id, slug, name, kind, org_number, contact_email, homepage",
            (org_number, contact_email, homepage, org_id),
        ).fetchone()
    return Publisher(*row)


def product_series(conn: psycopg.Connection, product_ids: list[int]) -> list[ProductSeries]:
    """The series of the products, with their devices' places, declared intervals and the
    time span of their readings (two index probes per series)."""
    with map_errors("read product series"):
        rows = conn.execute(
            "SELECT ps.product_id, s.id, s.device, s.quantity, s.unit, d.lat, d.lon, s.interval_s,"
            " (SELECT r.time FROM readings r WHERE r.series_id = s.id ORDER BY r.time LIMIT 1),"
            " (SELECT r.time FROM readings r WHERE r.series_id = s.id ORDER BY r.time DESC LIMIT 1)"
            " FROM data_product_series ps JOIN series s ON s.id = ps.series_id"
            " JOIN devices d ON d.org = s.org AND d.device = s.device"
            " WHERE ps.product_id = ANY(%s) ORDER BY ps.product_id, s.id",
            (product_ids,),
        ).fetchall()
    return [ProductSeries(*row) for row in rows]


def count_anonymous_request(conn: psycopg.Connection, *, client: str, now: datetime, window_s: int) -> int:
    """Count one keyless request of `client` in the fixed window holding `now`; return the
    window's count so far. Windows older than the previous one are pruned as they pass."""
    epoch = now.timestamp()
    start = now - timedelta(seconds=epoch % window_s)
    with map_errors("count anonymous request"):
        row = conn.execute(
            "INSERT INTO anonymous_requests (client, window_start, requests) VALUES (%s, %s, 1)"
            " ON CONFLICT (client, window_start) DO UPDATE SET requests = anonymous_requests.requests + 1"
            " RETURNING requests, xmax = 0",
            (client, start),
        ).fetchone()
        if row[1] and row[0] == 1:   # the client's first request of a new window
            conn.execute("DELETE FROM anonymous_requests WHERE window_start < %s",
                         (start - timedelta(seconds=window_s),))
    return int(row[0])


# Harvest ----------------------------------------------------------------------


def save_harvest(
    conn: psycopg.Connection, *, url: str, catalog_iri: str, title: str, description: str,
    datasets: list[tuple[str, str, str, str | None, str]],
) -> HarvestSource:
    """Replace what was harvested from `url` by this harvest: the source catalogue and its
    datasets, each (iri, title, publisher, landing page, Turtle description)."""
    with map_errors("save harvest"), conn.transaction():
        source_id = conn.execute(
            "INSERT INTO harvest_sources (url, catalog_iri, title, description) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (url) DO UPDATE SET catalog_iri = excluded.catalog_iri, title = excluded.title,"
            " description = excluded.description, harvested_at = now() RETURNING id",
            (url, catalog_iri, title, description),
        ).fetchone()[0]
        conn.execute("DELETE FROM external_datasets WHERE source_id = %s", (source_id,))
        conn.cursor().executemany(
            "INSERT INTO external_datasets (source_id, iri, title, publisher, landing_page, description)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [(source_id, *d) for d in datasets],
        )
        row = conn.execute(
            "SELECT id, url, catalog_iri, title, description, harvested_at FROM harvest_sources WHERE id = %s",
            (source_id,),
        ).fetchone()
    return HarvestSource(*row)


def harvest_sources(conn: psycopg.Connection) -> list[HarvestSource]:
    with map_errors("read harvest sources"):
        rows = conn.execute(
            "SELECT id, url, catalog_iri, title, description, harvested_at FROM harvest_sources ORDER BY id"
        ).fetchall()
    return [HarvestSource(*row) for row in rows]


def external_datasets(conn: psycopg.Connection) -> list[ExternalDataset]:
    with map_errors("read external datasets"):
        rows = conn.execute(
            "SELECT e.id, e.source_id, h.url, e.iri, e.title, e.publisher, e.landing_page, e.description,"
            " e.harvested_at FROM external_datasets e JOIN harvest_sources h ON h.id = e.source_id"
            " ORDER BY e.source_id, e.id"
        ).fetchall()
    return [ExternalDataset(*row) for row in rows]
