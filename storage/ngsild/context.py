"""Context entities: NGSI-LD entities of any type that producers create,
stored per organisation with expanded attribute names (table `ngsild_entities`).

An entity row holds its type IRI and `attributes`, a JSON object from
attribute IRI to the NGSI-LD attribute in normalized form (`type`, `value` /
`object`, `observedAt`, `unitCode`, sub-attributes by IRI). Its location, when
a Point, is also kept as `lon`/`lat` for geo-queries. `q` compiles here over
that JSON: numbers compare as numbers, strings and URIs as text, date-times
as instants, `~=` is a POSIX regular expression on text values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from storage.errors import StorageError, map_errors
from storage.ngsild.filters import And, Comparison, Exists, Filter, GeoFilter, Or, Params, geo_condition

__all__ = [
    "ContextEntity",
    "EntityExists",
    "context_entities",
    "context_entity",
    "context_types",
    "delete_context_entity",
    "insert_context_entity",
    "replace_context_entity",
]


class EntityExists(StorageError):
    """An entity with this id already exists in the organisation."""


@dataclass(frozen=True, slots=True)
class ContextEntity:
    org: str
    id: str
    type: str
    attributes: dict[str, Any]
    created_at: datetime
    modified_at: datetime


_COLUMNS = "org, entity_id, entity_type, attributes, created_at, modified_at"


def insert_context_entity(conn: psycopg.Connection, *, org: str, entity_id: str, entity_type: str,
                          attributes: dict[str, Any], point: tuple[float, float] | None) -> ContextEntity:
    """Create; EntityExists when the id is taken in `org`."""
    lon, lat = point if point else (None, None)
    with map_errors("create NGSI-LD entity"):
        row = conn.execute(
            "INSERT INTO ngsild_entities (org, entity_id, entity_type, attributes, lon, lat)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (org, entity_id) DO NOTHING"
            f" RETURNING {_COLUMNS}",
            (org, entity_id, entity_type, Jsonb(attributes), lon, lat),
        ).fetchone()
    if row is None:
        raise EntityExists(f"entity {entity_id} already exists")
    return ContextEntity(*row)


def replace_context_entity(conn: psycopg.Connection, *, org: str, entity_id: str, entity_type: str,
                           attributes: dict[str, Any], point: tuple[float, float] | None) -> tuple[ContextEntity, bool]:
    """Create or overwrite the whole entity; (entity, created)."""
    lon, lat = point if point else (None, None)
    with map_errors("upsert NGSI-LD entity"):
        row = conn.execute(
            "INSERT INTO ngsild_entities (org, entity_id, entity_type, attributes, lon, lat)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (org, entity_id) DO UPDATE SET"
            " entity_type = excluded.entity_type, attributes = excluded.attributes, lon = excluded.lon,"
            " lat = excluded.lat, modified_at = now()"
            f" RETURNING {_COLUMNS}, (xmax = 0)",
            (org, entity_id, entity_type, Jsonb(attributes), lon, lat),
        ).fetchone()
    return ContextEntity(*row[:-1]), bool(row[-1])


def context_entity(conn: psycopg.Connection, *, org: str, entity_id: str, for_update: bool = False
                   ) -> ContextEntity | None:
    lock = " FOR UPDATE" if for_update else ""
    with map_errors("get NGSI-LD entity"):
        row = conn.execute(f"SELECT {_COLUMNS} FROM ngsild_entities WHERE org = %s AND entity_id = %s{lock}",
                           (org, entity_id)).fetchone()
    return ContextEntity(*row) if row else None


def delete_context_entity(conn: psycopg.Connection, *, org: str, entity_id: str) -> bool:
    with map_errors("delete NGSI-LD entity"):
        row = conn.execute("DELETE FROM ngsild_entities WHERE org = %s AND entity_id = %s RETURNING 1",
                           (org, entity_id)).fetchone()
    return row is not None


# Queries ---------------------------------------------------------------------


def _compare_json(value: sql.Composable, term: Comparison, params: Params) -> sql.Composable:
    """`value` is a jsonb expression (the attribute's value or object)."""
    op = {"==": "=", "!=": "<>", ">": ">", ">=": ">=", "<": "<", "<=": "<="}.get(term.op)
    text = sql.SQL("({} #>> '{{}}')").format(value)
    if term.op in ("~=", "!~="):
        if not isinstance(term.value, str):
            return sql.SQL("FALSE")
        match = sql.SQL("(jsonb_typeof({v}) = 'string' AND {t} ~ {p})").format(v=value, t=text, p=params.add(term.value))
        return match if term.op == "~=" else sql.SQL("(jsonb_typeof({v}) = 'string' AND NOT {t} ~ {p})").format(
            v=value, t=text, p=params.add(term.value))

    def one(v: Any, operator: str) -> sql.Composable:
        o = sql.SQL(operator)
        if isinstance(v, bool):
            return sql.SQL("(jsonb_typeof({j}) = 'boolean' AND ({t})::boolean {o} {p})").format(
                j=value, t=text, o=o, p=params.add(v))
        if isinstance(v, (int, float)):
            return sql.SQL("(jsonb_typeof({j}) = 'number' AND ({t})::float8 {o} {p}::float8)").format(
                j=value, t=text, o=o, p=params.add(float(v)))
        if isinstance(v, datetime):
            instant = sql.SQL("(CASE WHEN coalesce({j} ->> '@value', {t}) ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}T'"
                              " THEN coalesce({j} ->> '@value', {t})::timestamptz END)").format(
                j=sql.SQL("(CASE WHEN jsonb_typeof({}) = 'object' THEN {} END)").format(value, value), t=text)
            return sql.SQL("({i} {o} {p}::timestamptz)").format(i=instant, o=o, p=params.add(v))
        return sql.SQL("(jsonb_typeof({j}) = 'string' AND {t} {o} {p})").format(j=value, t=text, o=o, p=params.add(v))

    if term.range:
        low, high = term.value  # type: ignore[misc]
        inside = sql.SQL("({} AND {})").format(one(low, ">="), one(high, "<="))
        return inside if term.op == "==" else sql.SQL("({} IS NOT NULL AND NOT {})").format(value, inside)
    if isinstance(term.value, tuple):
        member = sql.SQL("({})").format(sql.SQL(" OR ").join(one(v, "=") for v in term.value))
        return member if term.op == "==" else sql.SQL("({} IS NOT NULL AND NOT {})").format(value, member)
    if term.op == "!=":
        return sql.SQL("({} IS NOT NULL AND NOT {})").format(value, one(term.value, "="))
    assert op is not None
    return one(term.value, op)


def _compile(node: Filter, params: Params) -> sql.Composable:
    if isinstance(node, (And, Or)):
        joiner = sql.SQL(" AND ") if isinstance(node, And) else sql.SQL(" OR ")
        return sql.SQL("({})").format(joiner.join(_compile(t, params) for t in node.terms))
    if node.attribute is None:
        return sql.SQL("FALSE")
    attribute = sql.SQL("(e.attributes -> {})").format(params.add(node.attribute))
    target = attribute
    for sub in node.path:
        target = sql.SQL("({} -> {})").format(target, params.add(sub))
    if isinstance(node, Exists):
        return sql.SQL("({} IS NOT NULL)").format(target)
    if node.path and node.path[-1] in ("observedAt", "createdAt", "modifiedAt", "unitCode", "datasetId"):
        value = target
    else:
        value = sql.SQL("coalesce({t} -> 'value', {t} -> 'object')").format(t=target)
    if node.trail:
        value = sql.SQL("({} #> {}::text[])").format(value, params.add(list(node.trail)))
    return _compare_json(value, node, params)


_QUERY = """
SELECT {columns}, count(*) OVER () FROM ngsild_entities e
WHERE e.org = ANY(%(orgs)s)
  AND (%(types)s::text[] IS NULL OR e.entity_type = ANY(%(types)s))
  AND (%(ids)s::text[] IS NULL OR e.entity_id = ANY(%(ids)s))
  AND (%(id_pattern)s::text IS NULL OR e.entity_id ~ %(id_pattern)s)
  AND (%(attrs)s::text[] IS NULL OR e.attributes ?| %(attrs)s)
  AND {where}
ORDER BY e.org, e.entity_id
OFFSET %(offset)s LIMIT %(limit)s
"""


def context_entities(
    conn: psycopg.Connection, *, orgs: list[str], types: list[str] | None = None, ids: list[str] | None = None,
    id_pattern: str | None = None, attributes: list[str] | None = None, q: Filter | None = None,
    geo: GeoFilter | None = None, offset: int = 0, limit: int = 20,
) -> tuple[list[ContextEntity], int]:
    """The context entities of `orgs` that match, by (org, id); and how many match in all."""
    params = Params({"orgs": orgs, "types": types, "ids": ids, "id_pattern": id_pattern, "attrs": attributes,
                     "offset": offset, "limit": limit})
    where: list[sql.Composable] = [sql.SQL("TRUE")]
    if q is not None:
        where.append(_compile(q, params))
    if geo is not None:
        where.append(geo_condition(geo, params, lat=sql.SQL("e.lat"), lon=sql.SQL("e.lon")))
    columns = sql.SQL(", ").join(sql.SQL("e." + c.strip()) for c in _COLUMNS.split(","))
    query = sql.SQL(_QUERY).format(columns=columns, where=sql.SQL(" AND ").join(where))
    with map_errors("query NGSI-LD entities"):
        rows = conn.execute(query, params.values).fetchall()
        if rows:
            total = rows[0][-1]
        elif offset or not limit:
            total = conn.execute(sql.SQL("SELECT count(*) FROM ({}) page").format(query),
                                 {**params.values, "offset": 0, "limit": None}).fetchone()[0]
        else:
            total = 0
    return [ContextEntity(*row[:-1]) for row in rows], int(total)


def context_types(conn: psycopg.Connection, *, orgs: list[str]) -> list[tuple[str, list[str], int]]:
    """(type IRI, attribute IRIs present, number of entities) of the context entities of `orgs`."""
    with map_errors("NGSI-LD entity types"):
        rows = conn.execute(
            "SELECT e.entity_type, array(SELECT DISTINCT k FROM ngsild_entities x, jsonb_object_keys(x.attributes) k"
            "   WHERE x.org = ANY(%(orgs)s) AND x.entity_type = e.entity_type ORDER BY k), count(*)"
            " FROM ngsild_entities e WHERE e.org = ANY(%(orgs)s) GROUP BY e.entity_type ORDER BY e.entity_type",
            {"orgs": orgs},
        ).fetchall()
    return [(t, list(a), int(n)) for t, a, n in rows]
