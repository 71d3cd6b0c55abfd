"""Entities derived from devices: their latest values, their history and the
filters of NGSI-LD queries over them.

An entity is (org, device, model): the series of one device whose quantities
map to one Smart Data Model. Which quantity maps to which model attribute,
and how a reading converts to the model's unit, comes in as bound arrays
(`Vocabulary`, built by the face from the shared vocabulary table); the SQL
text is fixed. A query language filter (`q`) arrives as a small tree
(`Comparison`, `Exists`, `And`, `Or`, with attributes already resolved to the
model's attribute names) and is compiled here to a parameterised condition:
the tree decides which fixed fragments are joined, its values are parameters.

    device_entities      entities with their latest values, filtered and paged
    entity_types         the models present among the readable series
    series_of_entity     the series (with attribute and conversion) behind one entity
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from storage.errors import map_errors
from storage.ngsild.filters import And, Exists, Filter, GeoFilter, Or, Params, compare, geo_condition
from storage.products import COARSENED_DEVICES, READABLE_SERIES

__all__ = [
    "DeviceEntity",
    "EntityAttribute",
    "EntityKey",
    "EntitySeries",
    "Instance",
    "Period",
    "Vocabulary",
    "aggregate_readings",
    "device_entities",
    "device_units",
    "entity_types",
    "known_devices",
    "readable_tenants",
    "readings_between",
    "series_of_entity",
    "series_time_range",
]


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Bound arrays: (quantity, series unit or None, model, attribute, a, b)."""

    quantity: list[str]
    unit: list[str | None]
    model: list[str]
    attribute: list[str]
    a: list[float]
    b: list[float]


@dataclass(frozen=True, slots=True)
class EntityKey:
    model: str
    org: str
    device: str


@dataclass(frozen=True, slots=True)
class EntityAttribute:
    attribute: str
    series_id: int
    time: datetime | None      # None: the series has no reading yet
    value: float | None        # in the model's unit


@dataclass(frozen=True, slots=True)
class DeviceEntity:
    model: str
    org: str
    device: str
    lat: float | None
    lon: float | None
    interval_s: float | None   # the smallest expected interval of its series
    created_at: datetime
    modified_at: datetime | None
    observed: datetime | None  # the latest reading time over its attributes
    attributes: tuple[EntityAttribute, ...] = field(default_factory=tuple)


# Compilation -----------------------------------------------------------------


def _compile(node: Filter, params: Params) -> sql.Composable:
    if isinstance(node, (And, Or)):
        joiner = sql.SQL(" AND ") if isinstance(node, And) else sql.SQL(" OR ")
        return sql.SQL("({})").format(joiner.join(_compile(t, params) for t in node.terms))
    if node.attribute is None or node.trail:  # our derived values are numbers: no keys inside
        return sql.SQL("FALSE")
    if node.attribute == "dateObserved":
        if isinstance(node, Exists):
            return sql.SQL("e.observed IS NOT NULL")
        return compare(sql.SQL("e.observed"), node, params, kind=datetime)
    name = params.add(node.attribute)
    sub = node.path[0] if node.path else None
    if isinstance(node, Exists):
        if sub not in (None, "observedAt", "unitCode"):
            return sql.SQL("FALSE")
        return sql.SQL("EXISTS (SELECT 1 FROM unnest(e.names, e.times) x(n, t) WHERE x.n = {n} AND x.t IS NOT NULL)").format(n=name)
    if sub == "observedAt":
        cond = compare(sql.SQL("x.t"), node, params, kind=datetime)
    elif sub is None:
        cond = compare(sql.SQL("x.v"), node, params, kind=float)
    else:
        return sql.SQL("FALSE")
    return sql.SQL("EXISTS (SELECT 1 FROM unnest(e.names, e.vals, e.times) x(n, v, t)"
                   " WHERE x.n = {n} AND x.t IS NOT NULL AND {c})").format(n=name, c=cond)


_ENTITIES = """
WITH vocab AS (
    SELECT * FROM unnest(%(v_quantity)s::text[], %(v_unit)s::text[], %(v_model)s::text[], %(v_attribute)s::text[],
                         %(v_a)s::float8[], %(v_b)s::float8[]) AS v(quantity, unit, model, attribute, a, b)
), attrs AS (
    SELECT v.model, d.org, d.device, d.lat, d.lon, d.created_at, s.interval_s, s.created_at AS series_created,
           v.attribute, s.id AS series_id, l.time, l.value * v.a + v.b AS value
    FROM series s
    JOIN devices d ON d.org = s.org AND d.device = s.device
    JOIN vocab v ON v.quantity = s.quantity AND v.unit IS NOT DISTINCT FROM s.unit
    LEFT JOIN LATERAL (
        SELECT r.time, r.value FROM readings r
        WHERE r.series_id = s.id AND r.value <> 'NaN'::float8
        ORDER BY r.time DESC LIMIT 1
    ) l ON true
    WHERE s.id IN ({readable})
      AND (%(tenant)s::text IS NULL OR d.org = %(tenant)s)
      AND (%(models)s::text[] IS NULL OR v.model = ANY(%(models)s))
      AND (%(k_model)s::text[] IS NULL OR (v.model, d.org, d.device) IN
           (SELECT * FROM unnest(%(k_model)s::text[], %(k_org)s::text[], %(k_device)s::text[])))
      AND (%(id_pattern)s::text IS NULL
           OR ('urn:ngsi-ld:' || v.model || ':' || d.org || ':' || d.device) ~ %(id_pattern)s)
), e AS (
    SELECT model, org, device, min(lat) AS lat, min(lon) AS lon, min(created_at) AS created_at,
           min(interval_s) AS interval_s, max(time) AS observed, greatest(max(time), max(series_created)) AS modified,
           array_agg(attribute ORDER BY attribute) AS names, array_agg(series_id ORDER BY attribute) AS ids,
           array_agg(value ORDER BY attribute) AS vals, array_agg(time ORDER BY attribute) AS times
    FROM attrs GROUP BY model, org, device
)
SELECT e.model, e.org, e.device, e.lat, e.lon, e.interval_s, e.created_at, e.modified, e.observed,
       e.names, e.ids, e.times, e.vals, count(*) OVER () AS total
FROM e
WHERE {where}
ORDER BY e.org, e.device, e.model
OFFSET %(offset)s LIMIT %(limit)s
"""


def _visible(column: str) -> sql.Composable:
    return sql.SQL("(CASE WHEN EXISTS (SELECT 1 FROM (" + COARSENED_DEVICES + ") c WHERE c.org = e.org"
                   " AND c.device = e.device) THEN NULL ELSE " + column + " END)")


def device_entities(
    conn: psycopg.Connection,
    *,
    org_id: int,
    org_slug: str,
    vocabulary: Vocabulary,
    tenant: str | None = None,
    models: list[str] | None = None,
    keys: list[EntityKey] | None = None,
    id_pattern: str | None = None,
    attributes: list[str] | None = None,
    q: Filter | None = None,
    geo: GeoFilter | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[list[DeviceEntity], int]:
    """The entities `org` may read (its own devices' series and its grants'),
    filtered, ordered by (org, device, model); and how many match in all.

    `attributes`: only entities with at least one of these model attributes."""
    params = Params({
        "org_id": org_id, "org_slug": org_slug, "tenant": tenant, "models": models,
        "v_quantity": vocabulary.quantity, "v_unit": vocabulary.unit, "v_model": vocabulary.model,
        "v_attribute": vocabulary.attribute, "v_a": vocabulary.a, "v_b": vocabulary.b,
        "k_model": [k.model for k in keys] if keys is not None else None,
        "k_org": [k.org for k in keys] if keys is not None else None,
        "k_device": [k.device for k in keys] if keys is not None else None,
        "id_pattern": id_pattern, "offset": offset, "limit": limit,
    })
    where: list[sql.Composable] = [sql.SQL("TRUE")]
    if attributes is not None:
        where.append(sql.SQL("e.names && {}::text[]").format(params.add(attributes)))
    if q is not None:
        where.append(_compile(q, params))
    if geo is not None:   # a location the caller reads coarsened is unknown to geo-queries
        where.append(geo_condition(geo, params, lat=_visible("e.lat"), lon=_visible("e.lon")))
    query = sql.SQL(_ENTITIES).format(readable=sql.SQL(READABLE_SERIES), where=sql.SQL(" AND ").join(where))
    with map_errors("NGSI-LD entities"):
        rows = conn.execute(query, params.values).fetchall()
    total = rows[0][-1] if rows else _count(conn, query, params.values) if offset or not limit else 0
    entities = [
        DeviceEntity(model, org, device, lat, lon, interval_s, created, modified, observed, tuple(
            EntityAttribute(n, i, t, v) for n, i, t, v in zip(names, ids, times, vals)))
        for model, org, device, lat, lon, interval_s, created, modified, observed, names, ids, times, vals, _ in rows
    ]
    return entities, total


def _count(conn: psycopg.Connection, query: sql.Composable, values: dict[str, Any]) -> int:
    """The total when the page is past the end (no row carries the window count)."""
    with map_errors("NGSI-LD entity count"):
        row = conn.execute(sql.SQL("SELECT count(*) FROM ({}) page").format(query),
                           {**values, "offset": 0, "limit": None}).fetchone()
    return int(row[0])


def entity_types(conn: psycopg.Connection, *, org_id: int, org_slug: str, vocabulary: Vocabulary,
                 tenant: str | None = None) -> list[tuple[str, list[str], int]]:
    """(model, its attribute names present, number of entities) over what `org` may read."""
    entities, _ = device_entities(conn, org_id=org_id, org_slug=org_slug, vocabulary=vocabulary, tenant=tenant,
                                  limit=1_000_000)
    found: dict[str, tuple[set[str], int]] = {}
    for entity in entities:
        names, count = found.get(entity.model, (set(), 0))
        found[entity.model] = (names | {a.attribute for a in entity.attributes}, count + 1)
    return [(model, sorted(names), count) for model, (names, count) in sorted(found.items())]


@dataclass(frozen=True, slots=True)
class EntitySeries:
    series_id: int
    attribute: str
    a: float
    b: float


def series_of_entity(conn: psycopg.Connection, *, org_id: int, org_slug: str, vocabulary: Vocabulary,
                     key: EntityKey) -> list[EntitySeries]:
    """The readable series behind one entity, with their attribute and conversion."""
    with map_errors("NGSI-LD entity series"):
        rows = conn.execute(
            "WITH vocab AS (SELECT * FROM unnest(%(v_quantity)s::text[], %(v_unit)s::text[], %(v_model)s::text[],"
            "    %(v_attribute)s::text[], %(v_a)s::float8[], %(v_b)s::float8[]) AS v(quantity, unit, model, attribute, a, b))"
            " SELECT s.id, v.attribute, v.a, v.b FROM series s JOIN devices d ON d.org = s.org AND d.device = s.device"
            " JOIN vocab v ON v.quantity = s.quantity AND v.unit IS NOT DISTINCT FROM s.unit"
            " WHERE v.model = %(model)s AND d.org = %(org)s AND d.device = %(device)s"
            " AND s.id IN (" + READABLE_SERIES + ") ORDER BY v.attribute",
            {"v_quantity": vocabulary.quantity, "v_unit": vocabulary.unit, "v_model": vocabulary.model,
             "v_attribute": vocabulary.attribute, "v_a": vocabulary.a, "v_b": vocabulary.b,
             "model": key.model, "org": key.org, "device": key.device, "org_id": org_id, "org_slug": org_slug},
        ).fetchall()
    return [EntitySeries(*row) for row in rows]


def readable_tenants(conn: psycopg.Connection, *, org_id: int, org_slug: str) -> set[str]:
    """The organisations (slugs) whose entities `org` may read: itself and the
    owners of the series its active grants cover."""
    with map_errors("NGSI-LD tenants"):
        rows = conn.execute(
            "SELECT DISTINCT s.org FROM series s WHERE s.id IN (" + READABLE_SERIES + ")",
            {"org_id": org_id, "org_slug": org_slug},
        ).fetchall()
    return {org_slug} | {row[0] for row in rows}


# Temporal --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instance:
    time: datetime
    value: float


@dataclass(frozen=True, slots=True)
class Period:
    """Aggregates of one period of a series' readings (raw units)."""

    start: datetime
    count: int
    distinct: int | None    # None when answered from stored aggregates (they do not keep it)
    sum: float
    min: float
    max: float
    sumsq: float


def readings_between(conn: psycopg.Connection, series_id: int, start: datetime | None, end: datetime | None, *,
                     limit: int, newest_first: bool = False) -> list[Instance]:
    """Readings in [start, end) (open where None), oldest first, or the newest
    `limit` when `newest_first` (still returned oldest first). NaN is left out:
    an NGSI-LD value cannot carry it."""
    order = "DESC" if newest_first else "ASC"
    query = (
        "SELECT time, value FROM readings WHERE series_id = %(series)s AND value <> 'NaN'::float8"
        " AND (%(start)s::timestamptz IS NULL OR time >= %(start)s)"
        " AND (%(end)s::timestamptz IS NULL OR time < %(end)s)"
        f" ORDER BY time {order} LIMIT %(limit)s"
    )
    with map_errors("NGSI-LD temporal readings"):
        rows = conn.execute(query, {"series": series_id, "start": start, "end": end, "limit": limit}).fetchall()
    if newest_first:
        rows.reverse()
    return [Instance(t, v) for t, v in rows]


def aggregate_readings(conn: psycopg.Connection, series_id: int, start: datetime, end: datetime, *,
                       period_s: float | None) -> list[Period]:
    """Aggregates of the raw readings in [start, end) per period of `period_s`
    seconds from `start` (None: one period over the whole range)."""
    with map_errors("NGSI-LD temporal aggregation"):
        rows = conn.execute(
            "SELECT CASE WHEN %(period)s::float8 IS NULL THEN %(start)s::timestamptz"
            "       ELSE %(start)s::timestamptz + floor(extract(epoch FROM time - %(start)s::timestamptz)"
            "            / %(period)s::float8) * make_interval(secs => %(period)s::float8) END AS b,"
            " count(*), count(DISTINCT value), sum(value), min(value), max(value), sum(value * value)"
            " FROM readings WHERE series_id = %(series)s AND value <> 'NaN'::float8"
            " AND time >= %(start)s AND time < %(end)s GROUP BY b ORDER BY b",
            {"series": series_id, "start": start, "end": end, "period": period_s},
        ).fetchall()
    return [Period(*row) for row in rows]


def series_time_range(conn: psycopg.Connection, series_ids: list[int]) -> tuple[datetime | None, datetime | None]:
    """The first and last reading time over the series (two index probes each)."""
    with map_errors("NGSI-LD series range"):
        row = conn.execute(
            "SELECT min(f.time), max(l.time) FROM unnest(%s::int[]) s(id)"
            " LEFT JOIN LATERAL (SELECT time FROM readings WHERE series_id = s.id ORDER BY time LIMIT 1) f ON true"
            " LEFT JOIN LATERAL (SELECT time FROM readings WHERE series_id = s.id ORDER BY time DESC LIMIT 1) l ON true",
            (series_ids,),
        ).fetchone()
    return row[0], row[1]


def known_devices(conn: psycopg.Connection, *, org: str, devices: list[str]) -> set[str]:
    """Which of `devices` are registered under `org` (one statement for a batch)."""
    with map_errors("NGSI-LD known devices"):
        rows = conn.execute("SELECT device FROM devices WHERE org = %s AND device = ANY(%s)",
                            (org, devices)).fetchall()
    return {row[0] for row in rows}


def device_units(conn: psycopg.Connection, *, org: str, devices: list[str]) -> dict[tuple[str, str], str | None]:
    """(device, quantity) -> the unit its series is registered in, for a batch of `org`'s devices."""
    with map_errors("NGSI-LD series units"):
        rows = conn.execute("SELECT device, quantity, unit FROM series WHERE org = %s AND device = ANY(%s)",
                            (org, devices)).fetchall()
    return {(d, q): u for d, q, u in rows}


def device_series(conn: psycopg.Connection, *, org: str, device: str) -> dict[str, int]:
    """quantity -> series id of one of `org`'s devices."""
    with map_errors("NGSI-LD device series"):
        rows = conn.execute("SELECT quantity, id FROM series WHERE org = %s AND device = %s",
                            (org, device)).fetchall()
    return {q: sid for q, sid in rows}
