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
    parts: list[str | sql.Composable] = []   # str: constant JSON text
    for i, (key, kind, name) in enumerate(members):
        parts.append(("{" if i == 0 else ",") + json.dumps(key) + ":")
        if kind == "field" and texts and name in texts:
            parts.append(texts[name])
        elif kind == "field" and name == "id" and entity.name == "Observations":   # digits and '-'
            parts += ['"', b.output(entity, alias, name), '"']
        elif kind == "field":
            parts.append(_json_value(b, entity, alias, name))
        elif kind == "self":
            parts += ['"', link, '"']
        else:
            parts += ['"', link, json.dumps(f"/{name}")[1:]]
    parts.append("}" if members else "{}")
    merged: list[str | sql.Composable] = []   # adjacent constant pieces as one literal: fewer arguments
    for part in parts:
        if merged and isinstance(part, str) and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    # concat() copies once; a chain of || copies the growing text at every step
    return sql.SQL("concat({})").format(sql.SQL(", ").join(sql.Literal(p) if isinstance(p, str) else p for p in merged))


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
    last: tuple | None              # the keys asked for, of the page's last entity when more follow
    per_series: dict[int, int]      # Observations: how many of the page's entities each series holds


def read_entities_text(
    conn: psycopg.Connection, params: dict[str, object], steps: Sequence[Step], query: Query, *,
    members: Sequence[Member], base: str, keys: Sequence[str], limit: int,
) -> JsonText:
    """Like read_entities_json, the whole page joined by PostgreSQL into one text: one row
    crosses the wire, and no Python touches an entity (the fast path for Observations).

    One pass: the page in order (one more entity than asked, to know whether more follow),
    numbered, then one aggregate over it that joins the texts in that order, counts, and picks
    the last entity's keys and, for Observations, where each run of one series starts.
    """
    entity = ENTITY_SETS[steps[-1].entity]
    observations = entity.name == "Observations"
    b = Builder(params)
    alias, page, ordered = b.alias(), b.alias(), b.alias()
    order = b.order(query.orderby, entity, alias)
    window = sql.SQL("(ORDER BY {})").format(order)
    # lag() shares row_number()'s window: the runs of one series cost no second sort.
    prev = sql.SQL(", lag({}) OVER {} AS _prev").format(b.column(alias, "_series"), window) if observations else sql.SQL("")
    inner = sql.SQL(
        "SELECT {}.*, row_number() OVER {} AS _n{} FROM {} AS {} WHERE {} ORDER BY {} OFFSET {} LIMIT {}"
    ).format(alias, window, prev, b.source(entity), alias, _where(b, entity, alias, steps, query), order,
             b.param(query.skip), b.param(limit + 1))
    # The self link, which the navigation links repeat, is computed once per entity, and so is
    # the text of a field always equal to another (an Observation's resultTime is its
    # phenomenonTime); OFFSET 0 keeps them columns (not inlined three times into the aggregate).
    link = _self_link(b, entity, page, b.param(json.dumps(base)[1:-1], "text"))
    shared = {name: entity.fields[name].same_as or name for _, kind, name in members
              if kind == "field" and entity.fields[name].type == "time"}
    sources = sorted(set(shared.values()))
    once = [sql.SQL("{} AS {}").format(_json_value(b, entity, page, f), sql.Identifier(f"_text_{f}")) for f in sources]
    middle = sql.SQL("SELECT {}.*, {} AS _link{} FROM ({}) AS {} OFFSET 0").format(
        page, link, sql.SQL("").join(sql.SQL(", ") + c for c in once), inner, page)
    n = b.column(ordered, "_n")
    in_page = sql.SQL("{} <= {}").format(n, b.param(query.skip + limit))   # numbered before OFFSET
    at_last = sql.SQL("{} = {}").format(n, b.param(query.skip + limit))
    text = _json_object(b, entity, ordered, members, base, link=b.column(ordered, "_link"),
                        texts={name: b.column(ordered, f"_text_{f}") for name, f in shared.items()})
    if observations:
        series = b.column(ordered, "_series")
        # lag() looks past OFFSET too: the page's first entity starts a run whatever precedes it
        starts = sql.SQL("{} AND ({} = {} OR {} IS DISTINCT FROM {})").format(
            in_page, n, b.param(query.skip + 1), series, b.column(ordered, "_prev"))
        runs = sql.SQL("array_agg({s}) FILTER (WHERE {w}), array_agg({n}) FILTER (WHERE {w}), "
                       "count(*) FILTER (WHERE {p})").format(s=series, n=n, w=starts, p=in_page)
    else:
        runs = sql.SQL("NULL, NULL, NULL")
    last = [sql.SQL("(array_agg({}) FILTER (WHERE {}))[1]").format(b.column(ordered, k), at_last) for k in keys]
    # The aggregate reads the page in the order the subquery returns it (a plain aggregate
    # over a LIMIT: no parallel plan, no reordering).
    statement = sql.SQL("SELECT string_agg({}, ',') FILTER (WHERE {}), count(*) > {}, {}{} FROM ({}) AS {}").format(
        text, in_page, b.param(limit), runs, sql.SQL("").join(sql.SQL(", ") + c for c in last), middle, ordered)
    with map_errors(f"read {entity.name}"), conn.cursor() as cur:
        cur.adapters.register_loader("text", _Utf8Bytes)   # no decoding and encoding again of the page
        row = cur.execute(statement, b.params).fetchone()
    body, more, run_series, run_starts, served, *tail = row
    last_keys = tuple(tail) if keys and tail and tail[0] is not None else None
    return JsonText(body or b"", more, last_keys, _per_series(run_series or [], run_starts or [], served or 0))


def _per_series(run_series: list[int], run_starts: list[int], served: int) -> dict[int, int]:
    """Entities per series from the runs of one series: run k starts at number run_starts[k]
    and ends where the next starts (the last one after the `served`-th entity of the page)."""
    counts: dict[int, int] = {}
    if not run_starts:
        return counts
    ends = [*run_starts[1:], run_starts[0] + served]
    for s, start, end in zip(run_series, run_starts, ends):
        counts[s] = counts.get(s, 0) + end - start
    return counts
