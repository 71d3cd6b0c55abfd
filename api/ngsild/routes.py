"""Context information consumption (clause 5.7, 6.4–6.5, 6.25–6.27):

    GET /ngsi-ld/v1/entities                   query entities (type, id, idPattern, attrs/pick/omit,
                                               q, geo-query, limit/offset, count)
    GET /ngsi-ld/v1/entities/{entityId}        one entity
    GET /ngsi-ld/v1/types[/{type}]             entity types present
    GET /ngsi-ld/v1/attributes[/{attrId}]      attributes present
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.deps import ConnDep
from api.ngsild.context import CORE_CONTEXT, Context, link_header
from api.ngsild.entities import LOCATION, Format, check_uri, native_entity, parse_entity_id, render
from api.ngsild.errors import NgsiLdError
from api.ngsild.geo import parse_geo
from api.ngsild.query import parse_q, resolve
from api.ngsild.request import GEOJSON, JSON, JSONLD, AcceptDep, CallerDep, ContextDep, vocabulary
from api.ngsild.vocabulary import MODELS
from storage import ngsild as store

router = APIRouter(prefix="/ngsi-ld/v1", tags=["ngsi-ld"])

MAX_LIMIT = 1000
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


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise NgsiLdError("BadRequestData", "an empty list of names")
    return names


def _iris(ctx: Context, text: str | None) -> set[str] | None:
    names = _names(text)
    return None if names is None else {ctx.expand(n) for n in names}


def _attribute_names(iris: set[str]) -> dict[str, str]:
    """IRI -> model attribute name, for the IRIs that are attributes of a model."""
    found = {}
    for model in MODELS.values():
        for attribute in model.attributes:
            if attribute.iri in iris:
                found[attribute.iri] = attribute.attribute
    return found


def _models_of(ctx: Context, text: str) -> list[str]:
    """The models named by a type list (`A,B` or `A|B`, clause 4.17 selectors without `;`)."""
    names = [n.strip(" ()") for n in re.split(r"[,|]", text) if n.strip(" ()")]
    if ";" in text or not names:
        raise NgsiLdError("BadRequestData", f"type {text!r}: only lists of types (A,B or A|B) are supported")
    iris = {ctx.expand(n) for n in names}
    return [m.name for m in MODELS.values() if m.type_iri in iris]


def _q_name(ctx: Context):
    from api.ngsild.entities import DATE_OBSERVED

    def name_of(term: str) -> str | None:
        iri = ctx.expand(term)
        if iri == DATE_OBSERVED:
            return "dateObserved"
        return _attribute_names({iri}).get(iri)

    return name_of


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
    geo = parse_geo(georel, geometry, coordinates)
    if not any(v is not None for v in (id, type, idPattern, attrs, q, georel)):
        raise NgsiLdError("BadRequestData", "a query needs at least one of type, id, idPattern, attrs, q or georel")
    keys: list[store.EntityKey] | None = None
    if id is not None:
        ids = _names(id) or []
        for each in ids:
            check_uri(each)
        keys = [k for k in (parse_entity_id(i) for i in ids) if k is not None]
    if idPattern is not None:
        try:
            re.compile(idPattern)
        except re.error as exc:
            raise NgsiLdError("BadRequestData", f"idPattern {idPattern!r} is not a regular expression: {exc}") from None
    models = _models_of(ctx, type) if type is not None else None
    wanted = _iris(ctx, attrs)
    picked = _iris(ctx, pick) if pick is not None else wanted
    if picked is not None:
        picked = picked | {"id", "type"}
    omitted = _iris(ctx, omit)
    measured = None
    if wanted is not None:
        named = _attribute_names(wanted)
        measured = list(named.values()) if len(named) == len(wanted) else None
    tree = resolve(parse_q(q), _q_name(ctx)) if q is not None else None
    empty = (models is not None and not models) or (keys is not None and not keys) or (
        geoproperty is not None and ctx.expand(geoproperty) != LOCATION)
    rows, total = ([], 0) if empty else store.device_entities(
        conn, org_id=caller.org_id, org_slug=caller.org_slug, vocabulary=vocabulary(), tenant=caller.tenant,
        models=models, keys=keys, id_pattern=idPattern, attributes=measured, q=tree, geo=geo,
        offset=offset, limit=limit)
    entities = [render(native_entity(r), ctx, fmt=fmt, pick=picked, omit=omitted, sys_attrs=sys_attrs)
                for r in rows]
    headers: dict[str, str] = {}
    if count:
        headers["NGSILD-Results-Count"] = str(total)
    links = []
    if limit and offset + len(rows) < total or (limit and len(rows) == limit and not count):
        links.append(f'<{request.url.include_query_params(offset=offset + limit)}>; rel="next"')
    if offset > 0 and limit:
        links.append(f'<{request.url.include_query_params(offset=max(0, offset - limit))}>; rel="prev"')
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
    check_uri(entityId)
    key = parse_entity_id(entityId)
    rows = [] if key is None else store.device_entities(
        conn, org_id=caller.org_id, org_slug=caller.org_slug, vocabulary=vocabulary(), tenant=caller.tenant,
        keys=[key], limit=1)[0]
    if not rows:
        raise NgsiLdError("ResourceNotFound", f"no entity {entityId} that your API key may read")
    picked = _iris(ctx, pick) if pick is not None else _iris(ctx, attrs)
    if picked is not None:
        picked = picked | {"id", "type"}
    entity = render(native_entity(rows[0]), ctx, fmt=fmt, pick=picked, omit=_iris(ctx, omit), sys_attrs=sys_attrs)
    if accept == GEOJSON:
        return JSONResponse(_feature(entity, ctx), media_type=GEOJSON, headers={"Link": link_header(ctx.link)})
    return respond(entity, accept=accept, ctx=ctx)


@router.get("/types", summary="Available entity types")
def read_types(
    conn: ConnDep, caller: CallerDep, ctx: ContextDep, accept: AcceptDep,
    details: Annotated[bool, Query()] = False,
) -> JSONResponse:
    found = store.entity_types(conn, org_id=caller.org_id, org_slug=caller.org_slug, vocabulary=vocabulary(),
                               tenant=caller.tenant)
    if details:
        body: Any = [
            {"id": MODELS[m].type_iri, "type": "EntityType", "typeName": ctx.compact(MODELS[m].type_iri),
             "attributeNames": [ctx.compact(MODELS[m].attribute_named(a).iri) for a in names]}
            for m, names, _ in found
        ]
    else:
        body = {"id": f"urn:ngsi-ld:EntityTypeList:{caller.tenant or caller.org_slug}", "type": "EntityTypeList",
                "typeList": [ctx.compact(MODELS[m].type_iri) for m, _, _ in found]}
    return respond(body, accept=accept, ctx=ctx)


@router.get("/types/{type:path}", summary="Details of an entity type")
def read_type(type: str, conn: ConnDep, caller: CallerDep, ctx: ContextDep, accept: AcceptDep) -> JSONResponse:
    iri = ctx.expand(type)
    found = [t for t in store.entity_types(conn, org_id=caller.org_id, org_slug=caller.org_slug,
                                           vocabulary=vocabulary(), tenant=caller.tenant)
             if MODELS[t[0]].type_iri == iri]
    if not found:
        raise NgsiLdError("ResourceNotFound", f"no entities of type {type!r}")
    model, names, count = found[0]
    body = {
        "id": iri, "type": "EntityTypeInfo", "typeName": ctx.compact(iri), "entityCount": count,
        "attributeDetails": [
            {"id": MODELS[model].attribute_named(a).iri, "type": "Attribute",
             "attributeName": ctx.compact(MODELS[model].attribute_named(a).iri), "attributeTypes": ["Property"]}
            for a in names
        ],
    }
    return respond(body, accept=accept, ctx=ctx)


def _attributes(conn, caller) -> dict[str, tuple[set[str], int]]:
    """attribute IRI -> (type IRIs having it, number of entities)."""
    found: dict[str, tuple[set[str], int]] = {}
    rows, _ = store.device_entities(conn, org_id=caller.org_id, org_slug=caller.org_slug, vocabulary=vocabulary(),
                                    tenant=caller.tenant, limit=1_000_000)
    for row in rows:
        for iri in native_entity(row).attributes:
            types, n = found.get(iri, (set(), 0))
            found[iri] = (types | {MODELS[row.model].type_iri}, n + 1)
    return found


@router.get("/attributes", summary="Available attributes")
def read_attributes(
    conn: ConnDep, caller: CallerDep, ctx: ContextDep, accept: AcceptDep,
    details: Annotated[bool, Query()] = False,
) -> JSONResponse:
    found = _attributes(conn, caller)
    if details:
        body: Any = [{"id": iri, "type": "Attribute", "attributeName": ctx.compact(iri),
                      "typeNames": sorted(ctx.compact(t) for t in types)} for iri, (types, _) in sorted(found.items())]
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
    types, count = found[iri]
    kind = "GeoProperty" if iri == LOCATION else "Property"
    body = {"id": iri, "type": "Attribute", "attributeName": ctx.compact(iri), "attributeCount": count,
            "attributeTypes": [kind], "typeNames": sorted(ctx.compact(t) for t in types)}
    return respond(body, accept=accept, ctx=ctx)


__all__ = ["CORE_CONTEXT", "JSON", "router"]
