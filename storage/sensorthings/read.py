"""The SensorThings read queries: an entity set reached through a resource path,
and the entities linked to a page of parents (`$expand`).

Both take the query options as a `tree.Query` and answer plain dicts keyed by
the standard's property names (plus the private key columns asked for). Each
statement is one fixed shape over the entity set's SELECT; its predicates are
compiled by `compile.Builder`, every request value a bound parameter.

    read_entities   WHERE path AND $filter ORDER BY $orderby, key OFFSET $skip LIMIT $top + 1
    count_entities  the same set without paging ($count)
    read_linked     per parent key: LATERAL (... WHERE link = key ... LIMIT $top), so that
                    `$expand=Observations($top=1)` is one index probe per Datastream
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from storage.errors import map_errors
from storage.sensorthings.compile import Builder
from storage.sensorthings.entities import ENTITY_SETS, EntitySet, Link
from storage.sensorthings.tree import Query

__all__ = ["JsonPage", "Member", "Page", "Step", "count_entities", "count_linked", "read_entities",
           "read_entities_json", "read_linked"]

# One member of an entity's JSON: (JSON key, "field" | "self" | "nav", field or link name).
Member = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Step:
    """One segment of a resource path: an entity set, reached over `link` from the
    previous step (None for the first), restricted to `key` when given."""

    entity: str
    key: object | None = None
    link: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict]
    more: bool          # rows beyond this page exist


@dataclass(frozen=True, slots=True)
class JsonPage:
    rows: list[tuple]   # (JSON text of the entity, *keys)
    more: bool


def _scope(b: Builder, steps: Sequence[Step], alias: sql.Identifier) -> sql.Composable:
    """The condition that puts `alias` (of steps[-1].entity) on the path."""
    last = steps[-1]
    entity = ENTITY_SETS[last.entity]
    parts: list[sql.Composable] = []
    if last.key is not None:
        parts.append(b.key_equals(entity, alias, last.key))
    if len(steps) > 1:
        prev = steps[-2]
        parent = ENTITY_SETS[prev.entity]
        link = parent.links[last.link]
        if prev.key is not None and link.source_key == "id" and parent.name != "Observations":
            # Direct key: lets the planner probe the child's index with a constant.
            inner = b.alias()
            parts.append(sql.SQL("{} = {}").format(b.column(alias, link.target_key), b.param(prev.key)))
            parts.append(sql.SQL("EXISTS (SELECT 1 FROM {} AS {} WHERE {})").format(
                b.source(parent), inner, _scope(b, steps[:-1], inner)))
        else:
            parts.append(b.linked(link, alias, parent, lambda inner: _scope(b, steps[:-1], inner)))
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")


def _outputs(b: Builder, entity: EntitySet, alias: sql.Identifier, fields: Sequence[str],
             keys: Sequence[str]) -> sql.Composable:
    cols = [sql.SQL("{} AS {}").format(b.output(entity, alias, f), sql.Identifier(f)) for f in fields]
    cols += [sql.SQL("{} AS {}").format(b.column(alias, k), sql.Identifier(k)) for k in keys if k not in fields]
    return sql.SQL(", ").join(cols)


def _where(b: Builder, entity: EntitySet, alias: sql.Identifier, steps: Sequence[Step] | None,
           query: Query) -> sql.Composable:
    parts = [_scope(b, steps, alias)] if steps else []
    if query.filter is not None:
        parts.append(b.predicate(query.filter, entity, alias))   # NULL fails a WHERE, like false
    if query.after is not None:
        parts.append(b.keyset(entity, alias, query.orderby, query.after))
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")


def read_entities(
    conn: psycopg.Connection, params: dict[str, object], steps: Sequence[Step], query: Query, *,
    fields: Sequence[str], keys: Sequence[str], limit: int,
) -> Page:
    """The entities at the end of `steps`, filtered, ordered and paged (at most `limit`)."""
    entity = ENTITY_SETS[steps[-1].entity]
    b = Builder(params)
    alias = b.alias()
    statement = sql.SQL("SELECT {} FROM {} AS {} WHERE {} ORDER BY {} OFFSET {} LIMIT {}").format(
        _outputs(b, entity, alias, fields, keys), b.source(entity), alias, _where(b, entity, alias, steps, query),
        b.order(query.orderby, entity, alias), b.param(query.skip), b.param(limit + 1))
    with map_errors(f"read {entity.name}"), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(statement, b.params).fetchall()
    return Page(rows[:limit], len(rows) > limit)


def count_entities(conn: psycopg.Connection, params: dict[str, object], steps: Sequence[Step], query: Query) -> int:
    entity = ENTITY_SETS[steps[-1].entity]
    b = Builder(params)
    alias = b.alias()
    whole = replace(query, after=None)   # the count is of the whole set, whichever page this is
    statement = sql.SQL("SELECT count(*) FROM {} AS {} WHERE {}").format(
        b.source(entity), alias, _where(b, entity, alias, steps, whole))
    with map_errors(f"count {entity.name}"):
        return conn.execute(statement, b.params).fetchone()[0]


def read_linked(
    conn: psycopg.Connection, params: dict[str, object], link: Link, parent_keys: Sequence[int], query: Query, *,
    fields: Sequence[str], keys: Sequence[str], limit: int,
) -> dict[int, list[dict]]:
    """For each parent key, its linked entities (at most `limit`, after `query.skip`)."""
    if not parent_keys:
        return {}
    entity = ENTITY_SETS[link.target]
    b = Builder(params)
    alias = b.alias()
    where = _where(b, entity, alias, None, query)
    statement = sql.SQL(
        "SELECT k.parent AS _parent, x.* FROM unnest({}) AS k(parent) CROSS JOIN LATERAL ("
        "SELECT {} FROM {} AS {} WHERE {} = k.parent AND {} ORDER BY {} OFFSET {} LIMIT {}) AS x"
    ).format(b.param(sorted(set(parent_keys)), "bigint[]"), _outputs(b, entity, alias, fields, keys),
             b.source(entity), alias, b.column(alias, link.target_key), where,
             b.order(query.orderby, entity, alias), b.param(query.skip), b.param(limit))
    found: dict[int, list[dict]] = {}
    with map_errors(f"read linked {entity.name}"), conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(statement, b.params):
            found.setdefault(row.pop("_parent"), []).append(row)
    return found


def count_linked(
    conn: psycopg.Connection, params: dict[str, object], link: Link, parent_keys: Sequence[int], query: Query,
) -> dict[int, int]:
    if not parent_keys:
        return {}
    entity = ENTITY_SETS[link.target]
    b = Builder(params)
    alias = b.alias()
    key = b.column(alias, link.target_key)
    statement = sql.SQL("SELECT {}, count(*) FROM {} AS {} WHERE {} = ANY({}) AND {} GROUP BY 1").format(
        key, b.source(entity), alias, key, b.param(sorted(set(parent_keys)), "bigint[]"),
        _where(b, entity, alias, None, query))
    with map_errors(f"count linked {entity.name}"):
        return dict(conn.execute(statement, b.params).fetchall())


def _self_link(b: Builder, entity: EntitySet, alias: sql.Identifier, base: sql.Composable) -> sql.Composable:
    """The entity's self link as JSON-safe text (`base` comes JSON-escaped)."""
    key = b.column(alias, "id")
    if entity.fields["id"].type == "num":
        return sql.SQL("concat({}, {}, {}, ')')").format(base, sql.Literal(f"/{entity.name}("), key)
    # Observation ids are digits and '-'; other text ids are quoted for the URL and escaped for JSON.
    quoted = key if entity.name == "Observations" else sql.SQL(
        "substr(to_json(replace({}, '''', ''''''))::text, 2, length(to_json(replace({}, '''', ''''''))::text) - 2)"
    ).format(key, key)
    return sql.SQL("concat({}, {}, {}, {})").format(base, sql.Literal(f"/{entity.name}('"), quoted, sql.Literal("')"))


def _json_value(b: Builder, entity: EntitySet, alias: sql.Identifier, name: str) -> sql.Composable:
    """JSON text of one field ('null' for NULL)."""
    kind = entity.fields[name].type
    value = b.output(entity, alias, name)
    if kind == "num":
        if name != "id":
            value = sql.SQL("CASE WHEN {0} IN ('Infinity', '-Infinity') THEN NULL ELSE {0} END").format(value)
        return sql.SQL("coalesce(({})::text, 'null')").format(value)
    if kind in ("time", "interval"):   # digits, '-', ':', '.', 'T', 'Z', '/': nothing to escape
        return sql.SQL("coalesce({} || {} || {}, 'null')").format(sql.Literal('"'), value, sql.Literal('"'))
    if kind == "text":
        return sql.SQL("coalesce(to_json({})::text, 'null')").format(value)
    return sql.SQL("coalesce(({})::text, 'null')").format(value)   # json, geo (jsonb)


def _json_object(b: Builder, entity: EntitySet, alias: sql.Identifier, members: Sequence[Member],
                 base: str) -> sql.Composable:
    """The entity as the standard's JSON text, its members in order."""
    link = _self_link(b, entity, alias, b.param(json.dumps(base)[1:-1], "text"))
    parts: list[sql.Composable] = []
    for i, (key, kind, name) in enumerate(members):
        parts.append(sql.Literal(("{" if i == 0 else ",") + json.dumps(key) + ":"))
        if kind == "field":
            parts.append(_json_value(b, entity, alias, name))
        elif kind == "self":
            parts += [sql.Literal('"'), link, sql.Literal('"')]
        else:
            parts += [sql.Literal('"'), link, sql.Literal(json.dumps(f"/{name}")[1:])]
    parts.append(sql.Literal("}" if members else "{}"))
    # concat() copies once; a chain of || copies the growing text at every step
    return sql.SQL("concat({})").format(sql.SQL(", ").join(parts))


def read_entities_json(
    conn: psycopg.Connection, params: dict[str, object], steps: Sequence[Step], query: Query, *,
    members: Sequence[Member], base: str, keys: Sequence[str], limit: int,
) -> JsonPage:
    """Like read_entities, each entity already as its JSON text, built by PostgreSQL (the fast
    path for pages without $expand)."""
    entity = ENTITY_SETS[steps[-1].entity]
    b = Builder(params)
    alias, page = b.alias(), b.alias()
    order = b.order(query.orderby, entity, alias)
    # The page first (its rows numbered in order, each column computed once), then its JSON.
    inner = sql.SQL(
        "SELECT {}.*, row_number() OVER (ORDER BY {}) AS _n FROM {} AS {} WHERE {} ORDER BY {} OFFSET {} LIMIT {}"
    ).format(alias, order, b.source(entity), alias, _where(b, entity, alias, steps, query), order,
             b.param(query.skip), b.param(limit + 1))
    cols = [_json_object(b, entity, page, members, base)] + [b.column(page, k) for k in keys]
    statement = sql.SQL("SELECT {} FROM ({}) AS {} ORDER BY {}").format(
        sql.SQL(", ").join(cols), inner, page, b.column(page, "_n"))
    with map_errors(f"read {entity.name}"), conn.cursor() as cur:
        rows = cur.execute(statement, b.params).fetchall()
    return JsonPage(rows[:limit], len(rows) > limit)
