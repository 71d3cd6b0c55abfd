"""Context information consumption (clause 5.7, 6.4–6.5, 6.25–6.27):

    GET /ngsi-ld/v1/entities                   query entities (type, id, idPattern, attrs/pick/omit,
                                               q, geo-query, limit/offset, count)
    GET /ngsi-ld/v1/entities/{entityId}        one entity
    GET /ngsi-ld/v1/types[/{type}]             entity types present
    GET /ngsi-ld/v1/attributes[/{attrId}]      attributes present
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.access import account
from api.deps import ConnDep, public_link
from api.ngsild.context import Context, link_header
from api.ngsild.entities import LOCATION, Format, check_uri, native_entity, render
from api.ngsild.errors import NgsiLdError
from api.ngsild.request import GEOJSON, JSONLD, AcceptDep, Caller, CallerDep, ContextDep, vocabulary
from api.ngsild.selection import Selected, Selection, iris, latest_reads, select
from api.ngsild.vocabulary import MODELS
from storage import ngsild as store
from storage.ngsild.context import context_entities

router = APIRouter(prefix="/ngsi-ld/v1", tags=["ngsi-ld"])

MAX_LIMIT = 1000
READ_ACTION = "ngsild.read.entities"   # the audit log's action of an entity read
DEFAULT_LIMIT = 20


def respond(body: Any, *, accept: str, ctx: Context, status: int = 200, headers: dict[str, str] | None = None,
            ) -> JSONResponse:
    """Clause 6.3.5: application/json answers name the context in a Link header;
    application/ld+json ones carry it in the body."""
    headers = dict(headers or {})
    if accept == JSONLD:
        if isinstance(body, list):
            for item in body:
                item.setdefault("@context", ctx.value)
        elif isinstance(body, dict) and "type" in body:
            body.setdefault("@context", ctx.value)
    else:
        headers["Link"] = link_header(ctx.link)
    return JSONResponse(body, status_code=status, media_type=JSONLD if accept == JSONLD else accept, headers=headers)


def parse_format(options: str | None, fmt: str | None) -> tuple[Format, bool]:
    """(representation, sysAttrs) from `format` (1.8) or `options`."""
    chosen: Format = "normalized"
    sys_attrs = False
    names = {"keyValues": "keyValues", "simplified": "keyValues", "concise": "concise", "normalized": "normalized"}
    for option in (options.split(",") if options else []):
        option = option.strip()
        if option in names:
            chosen = names[option]  # type: ignore[assignment]
        elif option == "sysAttrs":
            sys_attrs = True
        elif option not in ("", "noOverwrite", "replace", "update", "temporalValues"):
            raise NgsiLdError("BadRequestData", f"option {option!r} is not one this operation takes")
    if fmt is not None:
        if fmt not in names:
            raise NgsiLdError("BadRequestData", f"format {fmt!r} is not normalized, concise, keyValues or simplified")
        chosen = names[fmt]  # type: ignore[assignment]
    return chosen, sys_attrs


@router.get("/entities", summary="Query entities")
def query_entities(
    conn: ConnDep,
    caller: CallerDep,
    ctx: ContextDep,
    accept: AcceptDep,
    request: Request,
    id: Annotated[str | None, Query(max_length=10_000)] = None,
    type: Annotated[str | None, Query(max_length=2000)] = None,
    idPattern: Annotated[str | None, Query(max_length=1000)] = None,
    attrs: Annotated[str | None, Query(max_length=4000)] = None,
    pick: Annotated[str | None, Query(max_length=4000)] = None,
    omit: Annotated[str | None, Query(max_length=4000)] = None,
    q: Annotated[str | None, Query(max_length=4096)] = None,
    georel: Annotated[str | None, Query(max_length=200)] = None,
    geometry: Annotated[str | None, Query(max_length=40)] = None,
    coordinates: Annotated[str | None, Query(max_length=100_000)] = None,
    geoproperty: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query()] = DEFAULT_LIMIT,
    offset: Annotated[int, Query()] = 0,
    count: Annotated[bool, Query()] = False,
    options: Annotated[str | None, Query(max_length=200)] = None,
    format: Annotated[str | None, Query(max_length=40)] = None,
) -> JSONResponse:
    fmt, sys_attrs = parse_format(options, format)
    if limit < 0 or offset < 0:
        raise NgsiLdError("BadRequestData", "limit and offset must not be negative")
    if limit > MAX_LIMIT:
        raise NgsiLdError("TooManyResults", f"limit {limit} exceeds this broker's maximum page of {MAX_LIMIT}")
    if limit == 0 and not count:
        raise NgsiLdError("BadRequestData", "limit=0 is only meaningful with count=true")
    selection = Selection.parse(ctx, id=id, type=type, idPattern=idPattern, attrs=attrs, q=q, georel=georel,
                                geometry=geometry, coordinates=coordinates, geoproperty=geoproperty)
    picked = iris(ctx, pick) if pick is not None else selection.attributes
    if picked is not None:
        picked = picked | {"id", "type"}
    omitted = iris(ctx, omit)
    rows, total = select(conn, caller, selection, offset=offset, limit=limit)
    entities = [render(r.native, ctx, fmt=fmt, pick=picked, omit=omitted, sys_attrs=sys_attrs) for r in rows]
    account(conn, caller.principal, action=READ_ACTION, reads=latest_reads(rows, picked, omitted), start=None,
            end=None)
    headers: dict[str, str] = {}
    if count:
        headers["NGSILD-Results-Count"] = str(total)
    links = []
    if limit and offset + len(rows) < total or (limit and len(rows) == limit and not count):
        links.append(f'<{public_link(request.app.state.settings, request, offset=offset + limit)}>; rel="next"')
    if offset > 0 and limit:
        links.append(f'<{public_link(request.app.state.settings, request, offset=max(0, offset - limit))}>; rel="prev"')
    if accept == GEOJSON:
        body: Any = _feature_collection(entities, ctx)
        headers.update({"Link": ", ".join([link_header(ctx.link), *links])})
        return JSONResponse(body, media_type=GEOJSON, headers=headers)
    response = respond(entities, accept=accept, ctx=ctx, headers=headers)
    if links:
        response.headers.append("Link", ", ".join(links))
    return response


def _feature(entity: dict[str, Any], ctx: Context) -> dict[str, Any]:
    location_term = ctx.compact(LOCATION)
    location = entity.get(location_term)
    geometry = location.get("value") if isinstance(location, dict) and "value" in location else location
    properties = {k: v for k, v in entity.items() if k != "id"}
    return {"id": entity["id"], "type": "Feature", "geometry": geometry, "properties": properties}


def _feature_collection(entities: list[dict[str, Any]], ctx: Context) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [_feature(e, ctx) for e in entities]}


def one_entity(conn, caller: Caller, ctx: Context, entity_id: str) -> Selected:
    """The entity with this id that the caller may read; 404 ResourceNotFound otherwise."""
    check_uri(entity_id)
    rows, _ = select(conn, caller, Selection.parse(ctx, id=entity_id), offset=0, limit=1)
    if not rows:
        raise NgsiLdError("ResourceNotFound", f"no entity {entity_id} that your API key may read")
    return rows[0]


@router.get("/entities/{entityId:path}", summary="Retrieve an entity")
def read_entity(
    entityId: str,
    conn: ConnDep,
    caller: CallerDep,
    ctx: ContextDep,
    accept: AcceptDep,
    attrs: Annotated[str | None, Query(max_length=4000)] = None,
    pick: Annotated[str | None, Query(max_length=4000)] = None,
    omit: Annotated[str | None, Query(max_length=4000)] = None,
    options: Annotated[str | None, Query(max_length=200)] = None,
    format: Annotated[str | None, Query(max_length=40)] = None,
) -> JSONResponse:
    fmt, sys_attrs = parse_format(options, format)
    found = one_entity(conn, caller, ctx, entityId)
    picked = iris(ctx, pick) if pick is not None else iris(ctx, attrs)
    if picked is not None:
        picked = picked | {"id", "type"}
    omitted = iris(ctx, omit)
    entity = render(found.native, ctx, fmt=fmt, pick=picked, omit=omitted, sys_attrs=sys_attrs)
    account(conn, caller.principal, action=READ_ACTION, reads=latest_reads([found], picked, omitted), start=None,
            end=None)
    if accept == GEOJSON:
        return JSONResponse(_feature(entity, ctx), media_type=GEOJSON, headers={"Link": link_header(ctx.link)})
    return respond(entity, accept=accept, ctx=ctx)


@dataclass
class _TypeInfo:
    count: int = 0
    attributes: dict[str, set[str]] = field(default_factory=dict)   # attribute IRI -> attribute types


def _inventory(conn, caller: Caller) -> dict[str, _TypeInfo]:
    """Type IRI -> its entities' count and attributes, over what the caller may read.

    The measured attributes of our device entities, and every attribute of the
    context entities."""
    found: dict[str, _TypeInfo] = {}
    for model, names, count in store.entity_types(conn, org_id=caller.org_id, org_slug=caller.org_slug,
                                                  vocabulary=vocabulary(), tenant=caller.tenant):
        info = found.setdefault(MODELS[model].type_iri, _TypeInfo())
        info.count += count
        for name in names:
            info.attributes.setdefault(MODELS[model].attribute_named(name).iri, set()).add("Property")
    if caller.tenant in (None, caller.org_slug):
        rows, _ = context_entities(conn, orgs=[caller.org_slug], limit=100_000)
        for row in rows:
            info = found.setdefault(row.type, _TypeInfo())
            info.count += 1
            for iri, attribute in row.attributes.items():
                info.attributes.setdefault(iri, set()).add(str(attribute.get("type", "Property")))
    return found


@router.get("/types", summary="Available entity types")
def read_types(
    conn: ConnDep, caller: CallerDep, ctx: ContextDep, accept: AcceptDep,
    details: Annotated[bool, Query()] = False,
) -> JSONResponse:
    found = _inventory(conn, caller)
    if details:
        body: Any = [{"id": iri, "type": "EntityType", "typeName": ctx.compact(iri),
                      "attributeNames": sorted(ctx.compact(a) for a in info.attributes)}
                     for iri, info in sorted(found.items())]
    else:
        body = {"id": f"urn:ngsi-ld:EntityTypeList:{caller.tenant or caller.org_slug}", "type": "EntityTypeList",
                "typeList": sorted(ctx.compact(iri) for iri in found)}
    return respond(body, accept=accept, ctx=ctx)


@router.get("/types/{type:path}", summary="Details of an entity type")
def read_type(type: str, conn: ConnDep, caller: CallerDep, ctx: ContextDep, accept: AcceptDep) -> JSONResponse:
    iri = ctx.expand(type)
    info = _inventory(conn, caller).get(iri)
    if info is None:
        raise NgsiLdError("ResourceNotFound", f"no entities of type {type!r}")
    body = {
        "id": iri, "type": "EntityTypeInfo", "typeName": ctx.compact(iri), "entityCount": info.count,
        "attributeDetails": [
            {"id": a, "type": "Attribute", "attributeName": ctx.compact(a), "attributeTypes": sorted(kinds)}
            for a, kinds in sorted(info.attributes.items())
        ],
    }
    return respond(body, accept=accept, ctx=ctx)


def _attributes(conn, caller: Caller) -> dict[str, tuple[set[str], set[str], int]]:
    """attribute IRI -> (type IRIs having it, attribute types, number of entities)."""
    found: dict[str, tuple[set[str], set[str], int]] = {}

    def add(type_iri: str, iri: str, kind: str) -> None:
        types, kinds, n = found.get(iri, (set(), set(), 0))
        found[iri] = (types | {type_iri}, kinds | {kind}, n + 1)

    rows, _ = store.device_entities(conn, org_id=caller.org_id, org_slug=caller.org_slug, vocabulary=vocabulary(),
                                    tenant=caller.tenant, limit=1_000_000)
    for row in rows:
        for iri, attribute in native_entity(row).attributes.items():
            add(MODELS[row.model].type_iri, iri, attribute["type"])
    if caller.tenant in (None, caller.org_slug):
        for entity in context_entities(conn, orgs=[caller.org_slug], limit=100_000)[0]:
            for iri, attribute in entity.attributes.items():
                add(entity.type, iri, str(attribute.get("type", "Property")))
    return found


@router.get("/attributes", summary="Available attributes")
def read_attributes(
    conn: ConnDep, caller: CallerDep, ctx: ContextDep, accept: AcceptDep,
    details: Annotated[bool, Query()] = False,
) -> JSONResponse:
    found = _attributes(conn, caller)
    if details:
        body: Any = [{"id": iri, "type": "Attribute", "attributeName": ctx.compact(iri),
                      "attributeTypes": sorted(kinds), "typeNames": sorted(ctx.compact(t) for t in types)}
                     for iri, (types, kinds, _) in sorted(found.items())]
    else:
        body = {"id": f"urn:ngsi-ld:AttributeList:{caller.tenant or caller.org_slug}", "type": "AttributeList",
                "attributeList": sorted(ctx.compact(iri) for iri in found)}
    return respond(body, accept=accept, ctx=ctx)


@router.get("/attributes/{attrId:path}", summary="Details of an attribute")
def read_attribute(attrId: str, conn: ConnDep, caller: CallerDep, ctx: ContextDep, accept: AcceptDep) -> JSONResponse:
    iri = ctx.expand(attrId)
    found = _attributes(conn, caller)
    if iri not in found:
        raise NgsiLdError("ResourceNotFound", f"no attribute {attrId!r}")
    types, kinds, count = found[iri]
    body = {"id": iri, "type": "Attribute", "attributeName": ctx.compact(iri), "attributeCount": count,
            "attributeTypes": sorted(kinds), "typeNames": sorted(ctx.compact(t) for t in types)}
    return respond(body, accept=accept, ctx=ctx)


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "READ_ACTION", "one_entity", "respond", "router"]
