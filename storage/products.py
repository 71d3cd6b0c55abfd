"""Data products, access grants and their usage, and what an organisation may read.

A provider publishes a `DataProduct` (a set of its own series with title,
licence, terms and price). A consumer asks for access: an `AccessGrant` row in
state `requested`; the provider approves (`active`, optionally until
`expires_at`) or rejects it, and may revoke it later. An organisation reads
exactly its own devices' series plus the series of its active, unexpired grants
(`READABLE_SERIES`, the one place that rule is written).

A provider may *list* a product (it appears in the DCAT-AP catalogue) and
publish it as *open* (an open licence, no price): an open product's series are
readable by everyone, with or without a key (`OPEN_SERIES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg

from storage.errors import map_errors

__all__ = [
    "LICENCES",
    "COARSENED_DEVICES",
    "OPEN_SERIES",
    "AccessGrant",
    "DataProduct",
    "Licence",
    "QualityWindow",
    "create_product",
    "decide_grant",
    "get_grant",
    "get_product",
    "grants_covering",
    "list_grants",
    "list_products",
    "meter_usage",
    "product_quality",
    "products_quality",
    "readable_series",
    "request_access",
    "revoke_grant",
    "set_publication",
]


@dataclass(frozen=True, slots=True)
class Licence:
    """A licence a product may carry: its URI in the EU Publications Office's
    licence authority table, and whether it is an open licence."""

    code: str
    uri: str
    open: bool


_LICENCE = "http://publications.europa.eu/resource/authority/licence/"
LICENCES: dict[str, Licence] = {
    lic.code: lic for lic in (
        Licence("CC-BY-4.0", _LICENCE + "CC_BY_4_0", True),
        Licence("CC0-1.0", _LICENCE + "CC0", True),
        Licence("CC-BY-SA-4.0", _LICENCE + "CC_BYSA_4_0", True),
        Licence("NLOD-2.0", _LICENCE + "NLOD_2_0", True),
        Licence("ODbL-1.0", _LICENCE + "ODBL", True),
        Licence("proprietary", _LICENCE + "PROP", False),
    )
}

# The series of open products: readable by everyone.
OPEN_SERIES = """
    SELECT ps.series_id FROM data_products p JOIN data_product_series ps ON ps.product_id = p.id WHERE p.open
"""

# The series an organisation may read: its own devices', its active grants' and the open products'.
READABLE_SERIES = """
    SELECT s.id FROM series s WHERE s.org = %(org_slug)s
    UNION
    SELECT ps.series_id FROM access_grants g JOIN data_product_series ps ON ps.product_id = g.product_id
    WHERE g.consumer_org = %(org_id)s AND g.status = 'active' AND (g.expires_at IS NULL OR g.expires_at > now())
    UNION
""" + OPEN_SERIES

# The devices (org, device, lat, lon) whose location organisation %(org_id)s (%(org_slug)s) reads only
# coarsened: it reads their series through an active grant with a location precision (GDPR
# minimisation), and they are neither its own nor open data. Filters of the faces must not use
# those exact points (storage.sensorthings.spatial, storage.ngsild.derived).
COARSENED_DEVICES = """
    SELECT DISTINCT d.org, d.device, d.lat, d.lon FROM access_grants g
    JOIN data_product_series ps ON ps.product_id = g.product_id
    JOIN series s ON s.id = ps.series_id JOIN devices d ON d.org = s.org AND d.device = s.device
    WHERE g.consumer_org = %(org_id)s AND g.status = 'active' AND (g.expires_at IS NULL OR g.expires_at > now())
      AND (g.location_grid_m IS NOT NULL OR g.location_h3_res IS NOT NULL) AND s.org <> %(org_slug)s
      AND s.id NOT IN (""" + OPEN_SERIES + """)
"""


@dataclass(frozen=True, slots=True)
class DataProduct:
    id: int
    org_id: int
    provider: str          # the provider's slug
    title: str
    description: str
    licence: str
    terms: str
    price_month: Decimal | None   # None: free
    currency: str
    created_at: datetime
    series_ids: list[int]
    listed: bool = False          # in the DCAT-AP catalogue
    open: bool = False            # readable without a key
    title_nb: str = ""            # Norwegian Bokmål title and description ("" when not given)
    description_nb: str = ""
    keywords: list[str] = field(default_factory=list)
    modified_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AccessGrant:
    id: int
    product_id: int
    provider_org: int
    consumer_org: int
    consumer: str          # the consumer's slug
    status: str            # requested | active | rejected | revoked
    message: str
    requested_at: datetime
    decided_at: datetime | None
    expires_at: datetime | None
    requests: int
    rows_served: int


@dataclass(frozen=True, slots=True)
class QualityWindow:
    days: int
    completeness: float | None     # readings / expected from declared intervals, capped at 1 per series
    freshness_s: float | None      # now − newest reading of the stalest series
    anomaly_rate: float | None     # anomalies / readings
    uptime: float | None           # share of hours with at least one reading
    readings: int
    anomalies: int


def readable_series(conn: psycopg.Connection, *, org_id: int, org_slug: str) -> set[int]:
    with map_errors("readable series"):
        rows = conn.execute(READABLE_SERIES, {"org_id": org_id, "org_slug": org_slug}).fetchall()
    return {row[0] for row in rows}


# Products ---------------------------------------------------------------------

_PRODUCT = (
    "SELECT p.id, p.org_id, o.slug, p.title, p.description, p.licence, p.terms, p.price_month, p.currency,"
    " p.created_at, coalesce((SELECT array_agg(series_id ORDER BY series_id) FROM data_product_series"
    " WHERE product_id = p.id), '{}'),"
    " p.listed, p.open, p.title_nb, p.description_nb, p.keywords, p.modified_at"
    " FROM data_products p JOIN organisations o ON o.id = p.org_id"
)


def create_product(
    conn: psycopg.Connection, *, org_id: int, org_slug: str, title: str, description: str, licence: str,
    terms: str, price_month: Decimal | None, currency: str, series_ids: list[int],
    listed: bool = False, open: bool = False, title_nb: str = "", description_nb: str = "",
    keywords: list[str] | None = None,
) -> DataProduct:
    """Publish a product of the provider's own series; ValueError names series that are not its own,
    or why the product cannot be open."""
    _check_open(open=open, licence=licence, price_month=price_month)
    with map_errors("create data product"), conn.transaction():
        own = {row[0] for row in conn.execute(
            "SELECT s.id FROM series s WHERE s.org = %s AND s.id = ANY(%s)",
            (org_slug, series_ids),
        )}
        foreign = sorted(set(series_ids) - own)
        if foreign:
            raise ValueError(f"series {foreign} are not series of your organisation's devices")
        product_id = conn.execute(
            "INSERT INTO data_products (org_id, title, description, licence, terms, price_month, currency,"
            " listed, open, title_nb, description_nb, keywords)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (org_id, title, description, licence, terms, price_month, currency, listed, open, title_nb,
             description_nb, keywords or []),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO data_product_series (product_id, series_id) SELECT %s, unnest(%s::integer[])",
            (product_id, sorted(own)),
        )
    product = get_product(conn, product_id)
    assert product is not None
    return product


def _check_open(*, open: bool, licence: str, price_month: Decimal | None) -> None:
    if not open:
        return
    if licence not in LICENCES or not LICENCES[licence].open:
        raise ValueError(f"an open product needs an open licence, not {licence!r}")
    if price_month is not None:
        raise ValueError("an open product has no price (price_month must be null)")


def set_publication(
    conn: psycopg.Connection, *, product_id: int, provider_org: int, listed: bool | None, open: bool | None
) -> DataProduct | None:
    """List or unlist a product of `provider_org`, publish it as open or close it (None: unchanged);
    None when it has no such product, ValueError when it cannot be open."""
    product = get_product(conn, product_id)
    if product is None or product.org_id != provider_org:
        return None
    _check_open(open=product.open if open is None else open, licence=product.licence,
                price_month=product.price_month)
    with map_errors("set product publication"):
        conn.execute(
            "UPDATE data_products SET listed = coalesce(%s, listed), open = coalesce(%s, open), modified_at = now()"
            " WHERE id = %s AND org_id = %s",
            (listed, open, product_id, provider_org),
        )
    return get_product(conn, product_id)


def get_product(conn: psycopg.Connection, product_id: int) -> DataProduct | None:
    with map_errors("get data product"):
        row = conn.execute(_PRODUCT + " WHERE p.id = %s", (product_id,)).fetchone()
    return DataProduct(*row) if row else None


def list_products(
    conn: psycopg.Connection, *, provider: str | None = None, after: int = 0, limit: int = 100,
    open_only: bool = False, listed_only: bool = False,
) -> list[DataProduct]:
    """The catalogue, by id, after `after`; optionally one provider's, only the open or the listed ones."""
    with map_errors("list data products"):
        rows = conn.execute(
            _PRODUCT + " WHERE p.id > %s AND (%s::text IS NULL OR o.slug = %s) AND (p.open OR NOT %s)"
            " AND (p.listed OR NOT %s) ORDER BY p.id LIMIT %s",
            (after, provider, provider, open_only, listed_only, limit),
        ).fetchall()
    return [DataProduct(*row) for row in rows]


# Grants -----------------------------------------------------------------------

_GRANT = (
    "SELECT g.id, g.product_id, p.org_id, g.consumer_org, o.slug, g.status, g.message, g.requested_at,"
    " g.decided_at, g.expires_at, g.requests, g.rows_served"
    " FROM access_grants g JOIN data_products p ON p.id = g.product_id JOIN organisations o ON o.id = g.consumer_org"
)


def request_access(conn: psycopg.Connection, *, product_id: int, consumer_org: int, message: str) -> AccessGrant:
    with map_errors("request access"):
        grant_id = conn.execute(
            "INSERT INTO access_grants (product_id, consumer_org, message) VALUES (%s, %s, %s) RETURNING id",
            (product_id, consumer_org, message),
        ).fetchone()[0]
    grant = get_grant(conn, grant_id)
    assert grant is not None
    return grant


def get_grant(conn: psycopg.Connection, grant_id: int) -> AccessGrant | None:
    with map_errors("get grant"):
        row = conn.execute(_GRANT + " WHERE g.id = %s", (grant_id,)).fetchone()
    return AccessGrant(*row) if row else None


def list_grants(conn: psycopg.Connection, *, org_id: int, limit: int = 1000) -> list[AccessGrant]:
    """Grants (and requests) where `org_id` is the consumer or the provider, newest first."""
    with map_errors("list grants"):
        rows = conn.execute(
            _GRANT + " WHERE g.consumer_org = %s OR p.org_id = %s ORDER BY g.id DESC LIMIT %s",
            (org_id, org_id, limit),
        ).fetchall()
    return [AccessGrant(*row) for row in rows]


def decide_grant(
    conn: psycopg.Connection, *, grant_id: int, provider_org: int, approve: bool, expires_at: datetime | None
) -> AccessGrant | None:
    """Approve or reject a pending request to one of `provider_org`'s products; None when none such."""
    with map_errors("decide grant"):
        row = conn.execute(
            "UPDATE access_grants g SET status = %s, decided_at = now(), expires_at = %s"
            " FROM data_products p WHERE g.id = %s AND p.id = g.product_id AND p.org_id = %s"
            " AND g.status = 'requested' RETURNING g.id",
            ("active" if approve else "rejected", expires_at if approve else None, grant_id, provider_org),
        ).fetchone()
    return get_grant(conn, row[0]) if row else None


def revoke_grant(conn: psycopg.Connection, *, grant_id: int, provider_org: int) -> AccessGrant | None:
    with map_errors("revoke grant"):
        row = conn.execute(
            "UPDATE access_grants g SET status = 'revoked', decided_at = now()"
            " FROM data_products p WHERE g.id = %s AND p.id = g.product_id AND p.org_id = %s"
            " AND g.status = 'active' RETURNING g.id",
            (grant_id, provider_org),
        ).fetchone()
    return get_grant(conn, row[0]) if row else None


def grants_covering(conn: psycopg.Connection, *, consumer_org: int, series_ids: list[int]) -> dict[int, int]:
    """series id -> the oldest active grant of `consumer_org` covering it (the one usage is metered on)."""
    with map_errors("grants covering series"):
        rows = conn.execute(
            "SELECT DISTINCT ON (ps.series_id) ps.series_id, g.id FROM access_grants g"
            " JOIN data_product_series ps ON ps.product_id = g.product_id"
            " WHERE g.consumer_org = %s AND ps.series_id = ANY(%s) AND g.status = 'active'"
            " AND (g.expires_at IS NULL OR g.expires_at > now()) ORDER BY ps.series_id, g.id",
            (consumer_org, series_ids),
        ).fetchall()
    return dict(rows)


def meter_usage(conn: psycopg.Connection, usage: dict[int, int]) -> None:
    """Add one request and `rows` rows served to each grant of `usage` (grant id -> rows)."""
    if not usage:
        return
    with map_errors("meter usage"):
        conn.execute(
            "UPDATE access_grants g SET requests = g.requests + 1, rows_served = g.rows_served + u.rows"
            " FROM unnest(%s::bigint[], %s::bigint[]) AS u(id, rows) WHERE g.id = u.id",
            (list(usage), list(usage.values())),
        )


# Quality ----------------------------------------------------------------------


def product_quality(
    conn: psycopg.Connection, product_id: int, *, days: int, width_s: int, now: datetime
) -> QualityWindow:
    """Quality of a product's series over the last `days` (``products_quality`` of one)."""
    return products_quality(conn, [product_id], days=days, width_s=width_s, now=now)[product_id]


def products_quality(
    conn: psycopg.Connection, product_ids: Sequence[int], *, days: int, width_s: int, now: datetime
) -> dict[int, QualityWindow]:
    """Quality of each product's series over the last `days`, computed from the stored data, for
    every product in one statement (a catalogue of many products costs no statement per product).

        completeness = mean over series with a declared interval of
                       min(1, readings / (covered seconds / interval_s))
        uptime       = mean over series of (hours with a reading / hours covered)
        anomaly_rate = anomalies / readings;  freshness = now − newest reading of the stalest series

    Counts come from the `width_s` aggregates (one row per series and window,
    not one per reading); a series counts from its creation when that is later
    (with the window its creation falls into).
    """
    start = now - timedelta(days=days)
    with map_errors("product quality"):
        rows = conn.execute(
            """
            WITH s AS (
                SELECT ps.product_id, se.id, se.interval_s, greatest(se.created_at, %(start)s) AS since
                FROM data_product_series ps JOIN series se ON se.id = ps.series_id
                WHERE ps.product_id = ANY(%(products)s)
            ), counts AS (
                SELECT s.product_id, s.id, s.interval_s, s.since,
                       coalesce((SELECT sum(a.count) FROM aggregates a WHERE a.width_s = %(width)s
                                 AND a.series_id = s.id AND a.bucket > s.since - make_interval(secs => %(width)s) AND a.bucket < %(now)s), 0) AS n,
                       (SELECT count(DISTINCT date_trunc('hour', a.bucket)) FROM aggregates a
                        WHERE a.width_s = %(width)s AND a.series_id = s.id AND a.bucket > s.since - make_interval(secs => %(width)s)
                          AND a.bucket < %(now)s AND a.count > 0) AS hours,
                       (SELECT count(*) FROM anomalies an WHERE an.series_id = s.id AND an.time >= s.since
                          AND an.time < %(now)s) AS anomalies,
                       (SELECT r.time FROM readings r WHERE r.series_id = s.id AND r.time < %(now)s
                        ORDER BY r.time DESC LIMIT 1) AS newest
                FROM s
            )
            SELECT
                product_id,
                avg(least(1.0, n / greatest(extract(epoch FROM %(now)s - since) / interval_s, 1)))
                    FILTER (WHERE interval_s IS NOT NULL),
                max(extract(epoch FROM %(now)s - coalesce(newest, since))),
                sum(anomalies)::double precision / nullif(sum(n), 0),
                avg(least(1.0, hours / greatest(ceil(extract(epoch FROM %(now)s - since) / 3600), 1))),
                coalesce(sum(n), 0)::bigint,
                coalesce(sum(anomalies), 0)::bigint
            FROM counts GROUP BY product_id
            """,
            {"products": list(product_ids), "start": start, "now": now, "width": width_s},
        ).fetchall()
    empty = QualityWindow(days=days, completeness=None, freshness_s=None, anomaly_rate=None, uptime=None,
                          readings=0, anomalies=0)   # a product without series
    found = dict.fromkeys(product_ids, empty)
    for product, completeness, freshness, anomaly_rate, uptime, readings, anomalies in rows:
        found[product] = QualityWindow(
            days=days,
            completeness=float(completeness) if completeness is not None else None,
            freshness_s=float(freshness) if freshness is not None else None,
            anomaly_rate=float(anomaly_rate) if anomaly_rate is not None else None,
            uptime=float(uptime) if uptime is not None else None,
            readings=int(readings),
            anomalies=int(anomalies),
        )
    return found
