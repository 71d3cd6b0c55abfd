"""What producers send: request bodies, their @context, and entities and
attributes normalized with expanded names (clause 5.5, 6.3.4).

    read_body            the JSON body and its Context: `application/json` takes the
                         context from the Link header, `application/ld+json` from the
                         body's `@context` (and refuses a Link header); others are 415
    normalize_entity     id, type IRI and attributes (IRI -> normalized attribute)
    normalize_attributes the attributes of a fragment (PATCH/POST attrs), the same way

An attribute may come normalized (`{"type": "Property", "value": ...}`) or
concise (a bare value, `{"value": ...}`, `{"object": ...}`, a GeoJSON geometry).
Sub-attribute names are expanded too; keys inside a Property's value are kept
as sent (as Orion-LD does). Every malformed part is a 400 BadRequestData that
names it.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from fastapi import Request

from api.errors import Problem
from api.ngsild.context import Context, ContextResolver, parse_link_header
from api.ngsild.entities import check_uri
from api.ngsild.errors import NgsiLdError

__all__ = ["KEYWORDS", "normalize_attribute", "normalize_attributes", "normalize_entity", "point_of", "read_body"]

MAX_BODY = 8_000_000
ATTRIBUTE_TYPES = ("Property", "Relationship", "GeoProperty", "LanguageProperty", "JsonProperty", "ListProperty",
                   "ListRelationship", "VocabProperty")
KEYWORDS = {"type", "value", "object", "observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt", "instanceId",
            "languageMap", "json", "valueList", "objectList", "objectType", "vocab", "lang", "deletedAt"}
GEOMETRIES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")
_NAME = re.compile(r"^[^\s<>\"'=;()\\]+$")


async def read_body(request: Request, resolver: ContextResolver) -> tuple[Any, Context]:
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type not in ("application/json", "application/ld+json"):
        raise Problem(415, f"send application/json (context in a Link header) or application/ld+json "
                           f"(context in the body), not {content_type or 'no content type'!r}")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise Problem(413, f"the body exceeds {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise NgsiLdError("InvalidRequest", f"the body is not JSON: {exc}") from None
    link = parse_link_header(request.headers.get("link"))
    items = body if isinstance(body, list) else [body]
    if content_type == "application/ld+json":
        if link is not None:
            raise NgsiLdError("BadRequestData", "application/ld+json carries its @context in the body, "
                                                "not in a Link header")
        contexts = [i.get("@context") for i in items if isinstance(i, dict)]
        if not contexts or any(c is None for c in contexts):
            raise NgsiLdError("BadRequestData", "an application/ld+json body needs an @context member")
        if any(json.dumps(c, sort_keys=True) != json.dumps(contexts[0], sort_keys=True) for c in contexts):
            raise NgsiLdError("BadRequestData", "the entities of one request must share one @context")
        ctx = Context.of(resolver, contexts[0])
    else:
        if any(isinstance(i, dict) and "@context" in i for i in items):
            raise NgsiLdError("BadRequestData", "an application/json body must not carry @context "
                                                "(send it in a Link header, or use application/ld+json)")
        ctx = Context.of(resolver, link)
    for item in items:
        if isinstance(item, dict):
            item.pop("@context", None)
    return body, ctx


def instant(text: Any, what: str) -> str:
    """An ISO 8601 date-time with zone, as UTC `...Z`."""
    if not isinstance(text, str):
        raise NgsiLdError("BadRequestData", f"{what} must be an ISO 8601 date-time string")
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise NgsiLdError("BadRequestData", f"{what} {text!r} is not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        raise NgsiLdError("BadRequestData", f"{what} {text!r} has no time zone")
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _coordinates_ok(value: Any, depth: int) -> bool:
    if depth == 0:
        return (isinstance(value, list) and len(value) in (2, 3)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
                and -180 <= value[0] <= 180 and -90 <= value[1] <= 90)
    return isinstance(value, list) and bool(value) and all(_coordinates_ok(v, depth - 1) for v in value)


def _geometry(value: Any, name: str) -> dict[str, Any]:
    depth = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}
    if not isinstance(value, dict) or value.get("type") not in depth:
        raise NgsiLdError("BadRequestData", f"GeoProperty {name!r}: the value must be a GeoJSON geometry")
    if not _coordinates_ok(value.get("coordinates"), depth[value["type"]]):
        raise NgsiLdError("BadRequestData", f"GeoProperty {name!r}: invalid {value['type']} coordinates")
    return {"type": value["type"], "coordinates": value["coordinates"]}


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or not _NAME.match(name):
        raise NgsiLdError("BadRequestData", f"{name!r} is not a valid attribute name")


def normalize_attribute(name: str, raw: Any, ctx: Context) -> dict[str, Any]:
    """One attribute in normalized form, sub-attribute names expanded."""
    if isinstance(raw, list) and raw and all(isinstance(i, dict) and i.get("type") in ATTRIBUTE_TYPES for i in raw):
        raise NgsiLdError("BadRequestData", f"attribute {name!r}: multi-attributes (several instances with "
                                            "datasetId) are not supported by this broker")
    if isinstance(raw, dict) and raw.get("type") in ATTRIBUTE_TYPES:
        attribute = dict(raw)
    elif isinstance(raw, dict) and raw.get("type") in GEOMETRIES and "coordinates" in raw:
        attribute = {"type": "GeoProperty", "value": raw}
    elif isinstance(raw, dict) and "object" in raw:
        attribute = {"type": "Relationship", **raw}
    elif isinstance(raw, dict) and "languageMap" in raw:
        attribute = {"type": "LanguageProperty", **raw}
    elif isinstance(raw, dict) and "json" in raw:
        attribute = {"type": "JsonProperty", **raw}
    elif isinstance(raw, dict) and "valueList" in raw:
        attribute = {"type": "ListProperty", **raw}
    elif isinstance(raw, dict) and "value" in raw:
        attribute = {"type": "Property", **raw}
    else:
        attribute = {"type": "Property", "value": raw}
    kind = attribute["type"]
    if kind in ("Property", "GeoProperty") and attribute.get("value") is None:
        raise NgsiLdError("BadRequestData", f"{kind} {name!r} needs a non-null value")
    if kind == "Relationship":
        target = attribute.get("object")
        targets = target if isinstance(target, list) else [target]
        if not targets or not all(isinstance(t, str) for t in targets):
            raise NgsiLdError("BadRequestData", f"Relationship {name!r} needs an object that is a URI")
        for t in targets:
            check_uri(t, f"object of {name!r}")
    if kind == "GeoProperty":
        attribute["value"] = _geometry(attribute["value"], name)
    if isinstance(attribute.get("value"), float) and not math.isfinite(attribute["value"]):
        raise NgsiLdError("BadRequestData", f"{name!r}: the value is not a finite number")
    out: dict[str, Any] = {}
    for key, value in attribute.items():
        if key in ("observedAt", "createdAt", "modifiedAt"):
            if key == "observedAt":
                out[key] = instant(value, f"{name}.observedAt")
            continue  # system attributes are the broker's
        if key == "unitCode" and not isinstance(value, str):
            raise NgsiLdError("BadRequestData", f"{name}.unitCode must be a string (UN/CEFACT common code)")
        if key in KEYWORDS:
            out[key] = value
            continue
        _check_name(key)
        out[ctx.expand(key)] = normalize_attribute(f"{name}.{key}", value, ctx)
    return out


def normalize_attributes(fragment: Any, ctx: Context, *, allow: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    if not isinstance(fragment, dict):
        raise NgsiLdError("BadRequestData", "the attributes must be a JSON object")
    out = {}
    for name, raw in fragment.items():
        if name in allow:
            continue
        if name in ("id", "type", "@context", "scope", "createdAt", "modifiedAt"):
            if name in ("createdAt", "modifiedAt"):
                continue
            raise NgsiLdError("BadRequestData", f"{name!r} cannot be given here")
        _check_name(name)
        out[ctx.expand(name)] = normalize_attribute(name, raw, ctx)
    return out


def normalize_entity(body: Any, ctx: Context) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """(id, type IRI, attributes) of an entity body."""
    if not isinstance(body, dict):
        raise NgsiLdError("BadRequestData", "an entity is a JSON object")
    entity_id, entity_type = body.get("id"), body.get("type")
    if not isinstance(entity_id, str):
        raise NgsiLdError("BadRequestData", "the entity has no id")
    check_uri(entity_id)
    if isinstance(entity_type, list) and len(entity_type) == 1:
        entity_type = entity_type[0]
    if not isinstance(entity_type, str) or not entity_type:
        raise NgsiLdError("BadRequestData", f"entity {entity_id}: type must be one type name "
                                            "(several types per entity are not supported)")
    _check_name(entity_type)
    return entity_id, ctx.expand(entity_type), normalize_attributes(body, ctx, allow=("id", "type"))


def point_of(attributes: dict[str, dict[str, Any]], location_iri: str) -> tuple[float, float] | None:
    location = attributes.get(location_iri)
    if location and location.get("type") == "GeoProperty" and location["value"].get("type") == "Point":
        lon, lat = location["value"]["coordinates"][:2]
        return float(lon), float(lat)
    return None
