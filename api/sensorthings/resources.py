"""Reading SensorThings resources: framework-free functions from (path, options)
to the JSON the standard defines. The router (routes.py) is a thin adapter.

Query options are evaluated in the standard's order: $filter, $count,
$orderby, $skip, $top, then $expand and $select on the page. A collection
holds at most $top entities (default 100, at most 10 000); `@iot.nextLink`
continues it. Observations served are audited and metered per series, like
the /v1 readings (api.access.account).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from dataclasses import dataclass, field
from urllib.parse import urlencode

import psycopg

from api.access import account
from api.errors import Problem
from api.privacy import minimise_geojson, purpose_refusals, refusal_detail
from api.sensorthings.mapping import check_select, entity_json, fields_for, members, query_params, self_link
from api.sensorthings.paths import PathError, ResourcePath, parse_path
from api.sensorthings.query import skiptoken
from storage.audit import DataRead
from storage.sensorthings import (
    ENTITY_SETS, EntitySet, Link, NotSupported, QueryError, Step, count_entities, count_linked, read_entities,
    read_entities_text, read_linked,
)
from storage.sensorthings.compile import Builder
from storage.sensorthings.tree import Query
from storage.tenants import Principal

__all__ = ["DEFAULT_TOP", "Served", "read_created", "read_resource"]

DEFAULT_TOP = 100
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Served:
    """What one request served: Observations per series, for the audit log and metering."""

    observations: Counter = field(default_factory=Counter)

    def add(self, entity: EntitySet, rows: list[dict]) -> None:
        if entity.name == "Observations":
            self.observations.update(row["_series"] for row in rows)


@dataclass(frozen=True, slots=True)
class Answer:
    body: object          # JSON, text for $value, or bytes of JSON already encoded
    text: bool = False


def _check(entity: EntitySet, query: Query) -> None:
    bad = check_select(entity, query.select)
    if bad is not None:
        raise QueryError(f"$select: {entity.singular} has no property {bad!r}")
    for expand in query.expand:
        if expand.link not in entity.links:
            raise QueryError(f"$expand: {entity.singular} has no navigation property {expand.link!r}")
        _check(ENTITY_SETS[entity.links[expand.link].target], expand.query)


def _keys(entity: EntitySet, query: Query) -> list[str]:
    keys = ["id"] + [entity.links[e.link].source_key for e in query.expand]
    if entity.name == "Observations":
        keys += ["_series", "_time"]
    return keys


def _shape(base: str, entity: EntitySet, rows: list[dict], query: Query) -> list[dict]:
    select = tuple(s for s in query.select if s not in {e.link for e in query.expand})
    if query.select and query.expand:
        select = (*select, *(e.link for e in query.expand if e.link in query.select))
    return [entity_json(base, entity, row, select=select) for row in rows]


def _expand(conn: psycopg.Connection, params: dict, base: str, entity: EntitySet, rows: list[dict],
            out: list[dict], query: Query, served: Served) -> None:
    for item in query.expand:
        link: Link = entity.links[item.link]
        target = ENTITY_SETS[link.target]
        inner = item.query
        keys = [row[link.source_key] for row in rows if row.get(link.source_key) is not None]
        top = (inner.top if inner.top is not None else DEFAULT_TOP) if link.many else 1
        found = read_linked(conn, params, link, keys, inner, fields=fields_for(target, inner.select),
                            keys=_keys(target, inner), limit=top + 1)
        counts = count_linked(conn, params, link, keys, inner) if inner.count and link.many else {}
        # the children of every row, so that the next level is one statement too (not one per row)
        every_child: list[dict] = []
        every_shaped: list[dict] = []
        for row, body in zip(rows, out):
            key = row.get(link.source_key)
            children = found.get(key, [])
            more = len(children) > top
            children = children[:top]
            served.add(target, children)
            shaped = _shape(base, target, children, inner)
            every_child += children
            every_shaped += shaped
            if link.many:
                body[item.link] = shaped
                if inner.count:
                    body[f"{item.link}@iot.count"] = counts.get(key, 0)
                if more:
                    nested = {"$top": str(top), "$skip": str(inner.skip + top)}
                    parent = self_link(base, entity, row["id"])
                    body[f"{item.link}@iot.nextLink"] = f"{parent}/{item.link}?{urlencode(nested, safe='$')}"
            else:
                body[item.link] = shaped[0] if shaped else None
            body.pop(f"{item.link}@iot.navigationLink", None)
        _expand(conn, params, base, target, every_child, every_shaped, inner, served)


def _data_array(base: str, rows: list[dict], query: Query) -> list[dict]:
    """Observations grouped by Datastream, in the standard's dataArray form."""
    components = [c for c in (query.select or ("id", "phenomenonTime", "resultTime", "result"))]
    components = ["id" if c == "@iot.id" else c for c in components]
    groups: dict[int, list[list]] = {}
    for row in rows:
        groups.setdefault(row["_series"], []).append([row.get(c) for c in components])
    return [{"Datastream@iot.navigationLink": self_link(base, ENTITY_SETS["Datastreams"], series),
             "components": components, "dataArray@iot.count": len(values), "dataArray": values}
            for series, values in groups.items()]


def read_resource(
    conn: psycopg.Connection, principal: Principal, *, base: str, path: str, options: Query, url_params: dict,
    path_url: str, reader: psycopg.Connection | None = None,
) -> Answer:
    """The entities are read on `reader` (the read replica, api.routing) when given; refusals,
    minimisation and the audit of what was served on `conn` (the primary)."""
    try:
        resource = parse_path(path)
    except PathError as exc:
        raise Problem(exc.status, str(exc)) from None
    entity = resource.entity
    params = query_params(principal)
    served = Served()
    try:
        _check(entity, options)
        answer = _read(reader or conn, params, base, resource, entity, options, url_params, path_url, served)
    except NotSupported as exc:
        raise Problem(501, str(exc)) from None
    except QueryError as exc:
        raise Problem(400, str(exc)) from None
    refused = purpose_refusals(conn, principal, served.observations, action="sta.read.observations")
    if refused:  # personal data outside the grant's purpose (api.privacy)
        raise Problem(403, refusal_detail(min(refused)))
    if not answer.text and not isinstance(answer.body, bytes):   # locations at the grant's precision
        minimise_geojson(conn, principal, answer.body)
    elif isinstance(answer.body, bytes) and entity.name in ("Locations", "FeaturesOfInterest"):
        answer = Answer(json.dumps(minimise_geojson(conn, principal, json.loads(answer.body))).encode())
    if served.observations:
        account(conn, principal, action="sta.read.observations",
                reads=[DataRead(s, n) for s, n in sorted(served.observations.items())], start=None, end=None)
    return answer


def _read(conn, params, base, resource: ResourcePath, entity: EntitySet, options: Query, url_params: dict,
          path_url: str, served: Served) -> Answer:
    if resource.single:
        page = read_entities(conn, params, resource.steps, Query(), fields=fields_for(entity, ()),
                             keys=_keys(entity, options), limit=1)
        if not page.rows:
            raise Problem(404, f"no such {entity.singular} that your organisation may read")
        row = page.rows[0]
        if resource.ref:
            return Answer({"@iot.selfLink": self_link(base, entity, row["id"])})
        if resource.prop is not None:
            body = entity_json(base, entity, row)
            value = body.get(resource.prop)
            if resource.value:
                if value is None:
                    raise Problem(404, f"{entity.singular}/{resource.prop} is null")
                return Answer(value if isinstance(value, str) else _json_text(value), text=True)
            return Answer({resource.prop: value})
        served.add(entity, [row])
        out = _shape(base, entity, [row], options)
        _expand(conn, params, base, entity, [row], out, options, served)
        return Answer(out[0])
    if len(resource.steps) > 1:
        parent = resource.steps[:-1]
        if not read_entities(conn, params, parent, Query(), fields=["id"], keys=[], limit=1).rows:
            raise Problem(404, f"no such {ENTITY_SETS[parent[-1].entity].singular} that your organisation may read")
    top = options.top if options.top is not None else DEFAULT_TOP
    fields = ["id"] if resource.ref else fields_for(entity, options.select)
    if options.extra.get("$resultFormat") == "dataArray":
        if entity.name != "Observations":
            raise QueryError("$resultFormat=dataArray applies to Observations only")
        fields = list(entity.fields)
    if not (resource.ref or options.expand or options.extra.get("$resultFormat")):
        return _json_page(conn, params, base, resource, entity, options, url_params, path_url, served, top)
    page = read_entities(conn, params, resource.steps, options, fields=fields, keys=_keys(entity, options), limit=top)
    body: dict[str, object] = {}
    if options.count:
        body["@iot.count"] = count_entities(conn, params, resource.steps, options)
    if resource.ref:
        body["value"] = [{"@iot.selfLink": self_link(base, entity, r["id"])} for r in page.rows]
    elif options.extra.get("$resultFormat") == "dataArray":
        served.add(entity, page.rows)
        body["value"] = _data_array(base, page.rows, options)
    else:
        served.add(entity, page.rows)
        out = _shape(base, entity, page.rows, options)
        _expand(conn, params, base, entity, page.rows, out, options, served)
        body["value"] = out
    if page.more:
        last = (page.rows[-1]["_series"], page.rows[-1]["_time"]) if "_time" in page.rows[-1] else None
        body["@iot.nextLink"] = _next_link(path_url, url_params, entity, options, top, last)
    return Answer(body)


def _next_link(path_url: str, url_params: dict, entity: EntitySet, options: Query, top: int,
               last: tuple[int, datetime] | None) -> str:
    """Observations in an index order continue by keyset ($skiptoken), everything else by $skip."""
    following = {**url_params, "$top": str(top)}
    if last is not None and Builder.keyset_order(entity, options.orderby) is not None:
        following.pop("$skip", None)
        following["$skiptoken"] = skiptoken(last[0], (last[1] - _EPOCH) // timedelta(microseconds=1))
    else:
        following["$skip"] = str(options.skip + top)
    return f"{path_url}?{urlencode(following, safe='$')}"


def _json_page(conn, params, base: str, resource: ResourcePath, entity: EntitySet, options: Query,
               url_params: dict, path_url: str, served: Served, top: int) -> Answer:
    """A page without $expand: built and joined as one JSON text by PostgreSQL, sent as it comes."""
    observations = entity.name == "Observations"
    page = read_entities_text(conn, params, resource.steps, options, members=members(entity, options.select),
                              base=base, keys=["_series", "_time"] if observations else [], limit=top)
    if observations:
        served.observations.update(page.per_series)
    head = f'{{"@iot.count":{count_entities(conn, params, resource.steps, options)},' if options.count else "{"
    tail = "]}"
    if page.more:
        link = _next_link(path_url, url_params, entity, options, top, page.last if observations else None)
        tail = f'],"@iot.nextLink":{json.dumps(link)}}}'
    return Answer(b"".join((head.encode(), b'"value":[', page.text, tail.encode())))


def read_created(conn: psycopg.Connection, principal: Principal, *, base: str, entity_set: str, key: object) -> dict:
    """The entity a write just created, as a read answers it (not audited: the writer's own data)."""
    entity = ENTITY_SETS[entity_set]
    page = read_entities(conn, query_params(principal), [Step(entity_set, key)], Query(),
                         fields=fields_for(entity, ()), keys=["id"], limit=1)
    if not page.rows:
        return {"@iot.id": key, "@iot.selfLink": self_link(base, entity, key)}
    return entity_json(base, entity, page.rows[0])


def _json_text(value: object) -> str:
    return json.dumps(value)
