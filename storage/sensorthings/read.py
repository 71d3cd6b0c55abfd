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
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.rows import dict_row

from storage.errors import map_errors
from storage.sensorthings.compile import Builder
from storage.sensorthings.entities import ENTITY_SETS, EntitySet, Link
from storage.sensorthings.tree import Query

__all__ = ["JsonPage", "Member", "Page", "Step", "count_entities", "count_linked", "read_entities",
           "JsonText", "read_entities_json", "read_entities_text", "read_linked", "readable_series_ids"]

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
    if kind == "text" and name == "id" and entity.name == "Observations":   # digits and '-': nothing to escape
        return sql.SQL("concat({}, {}, {})").format(sql.Literal('"'), value, sql.Literal('"'))
    if kind == "text":
        return sql.SQL("coalesce(to_json({})::text, 'null')").format(value)
    return sql.SQL("coalesce(({})::text, 'null')").format(value)   # json, geo (jsonb)


def _json_object(b: Builder, entity: EntitySet, alias: sql.Identifier, members: Sequence[Member],
                 base: str, *, link: sql.Composable | None = None,
                 texts: dict[str, sql.Composable] | None = None) -> sql.Composable:
    """The entity as the standard's JSON text, its members in order (`link`: its self link
    already computed, as a column; `texts`: fields whose JSON text is already computed)."""
    if link is None:
        link = _self_link(b, entity, alias, b.param(json.dumps(base)[1:-1], "text"))
    parts: list[sql.Composable] = []
    for i, (key, kind, name) in enumerate(members):
        parts.append(sql.Literal(("{" if i == 0 else ",") + json.dumps(key) + ":"))
        if kind == "field":
            parts.append(texts[name] if texts and name in texts else _json_value(b, entity, alias, name))
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


def readable_series_ids(conn: psycopg.Connection, params: dict[str, object]) -> list[int]:
    """The ids of every Datastream the caller of `params` may read (its MQTT topics)."""
    statement = sql.SQL("SELECT e.id FROM ({}) AS e ORDER BY e.id").format(sql.SQL(ENTITY_SETS["Datastreams"].source))
    with map_errors("readable series"):
        return [row[0] for row in conn.execute(statement, params)]


class _Utf8Bytes(Loader):
    """text as the bytes PostgreSQL sent (UTF-8): a page's JSON goes out as it came in."""

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


@dataclass(frozen=True, slots=True)
class JsonText:
    """A page as one JSON text, UTF-8: its entities joined by ',' (without the brackets)."""

    text: bytes
    more: bool                      # entities beyond this page exist
    last: tuple | None              # the keys asked for, of the page's last entity
    per_series: dict[int, int]      # Observations: how many of the page's entities each series holds


def read_entities_text(
    conn: psycopg.Connection, params: dict[str, object], steps: Sequence[Step], query: Query, *,
    members: Sequence[Member], base: str, keys: Sequence[str], limit: int,
) -> JsonText:
    """Like read_entities_json, the whole page joined by PostgreSQL into one text: one row
    crosses the wire, and no Python touches an entity (the fast path for Observations)."""
    entity = ENTITY_SETS[steps[-1].entity]
    b = Builder(params)
    alias, page, ordered = b.alias(), b.alias(), b.alias()
    order = b.order(query.orderby, entity, alias)
    n = b.column(page, "_n")
    # The page in order (one more entity than asked, to know whether more follow), numbered ...
    inner = sql.SQL(
        "SELECT {}.*, row_number() OVER (ORDER BY {}) AS _n FROM {} AS {} WHERE {} ORDER BY {} OFFSET {} LIMIT {}"
    ).format(alias, order, b.source(entity), alias, _where(b, entity, alias, steps, query), order,
             b.param(query.skip), b.param(limit + 1))
    # ... then its JSON, joined in the order of the sorted subquery (sorted on the number alone,
    # before the texts are built, so that the sort never holds the texts).
    limit_p = b.param(query.skip + limit)   # the numbers count from the first entity, before OFFSET
    # The self link, which the navigation links repeat, is computed once per entity, and so is
    # the text of a field always equal to another (an Observation's resultTime is its phenomenonTime).
    link = _self_link(b, entity, page, b.param(json.dumps(base)[1:-1], "text"))
    shared = {name: entity.fields[name].same_as or name for _, kind, name in members
              if kind == "field" and entity.fields[name].type == "time"}
    sources = sorted(set(shared.values()))
    once = [sql.SQL("{} AS {}").format(_json_value(b, entity, page, f), sql.Identifier(f"_text_{f}")) for f in sources]
    text = sql.SQL(
        "(SELECT string_agg({}, ',') FROM (SELECT *, {} AS _link{} FROM page AS {} WHERE {} <= {} ORDER BY {}) AS {})"
    ).format(_json_object(b, entity, ordered, members, base, link=b.column(ordered, "_link"),
                          texts={name: b.column(ordered, f"_text_{f}") for name, f in shared.items()}),
             link, sql.SQL("").join(sql.SQL(", ") + c for c in once), page, n, limit_p, n, ordered)
    # The last entity's keys, and the page's count per series, without sorting the page again.
    last = sql.SQL(", ").join([b.column(page, k) for k in keys] or [sql.SQL("NULL")])
    if entity.name == "Observations":
        counts = sql.SQL("SELECT array_agg(g.s ORDER BY g.s), array_agg(g.c ORDER BY g.s) FROM"
                         " (SELECT {s} AS s, count(*) AS c FROM page AS {p} WHERE {n} <= {lim} GROUP BY 1) AS g").format(
            s=b.column(page, "_series"), p=page, n=n, lim=limit_p)
    else:
        counts = sql.SQL("SELECT NULL, NULL")
    statement = sql.SQL(
        "WITH page AS MATERIALIZED ({}) SELECT {}, (SELECT count(*) FROM page) > {}, c.*, l.* FROM ({}) AS c"
        " LEFT JOIN (SELECT {} FROM page AS {} WHERE {} = (SELECT least(max(_n), {}) FROM page)) AS l ON true"
    ).format(inner, text, b.param(limit), counts, last, page, n, limit_p)
    with map_errors(f"read {entity.name}"), conn.cursor() as cur:
        cur.adapters.register_loader("text", _Utf8Bytes)   # no decoding and encoding again of the page
        row = cur.execute(statement, b.params).fetchone()
    body, more, series, numbers, *tail = row
    last_keys = tuple(tail) if keys and tail and tail[0] is not None else None
    return JsonText(body or b"", more, last_keys, dict(zip(series or [], numbers or [])))
