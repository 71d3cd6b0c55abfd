"""What the SensorThings face says of citylab's data: the vocabulary handed to
the entity sets (units from protocol/units.py, ObservedProperties from
protocol/quantities.py), the conformance classes, and entity rows as the
standard's JSON (`@iot.id`, `@iot.selfLink`, `@iot.navigationLink`).

The tables behind each entity set are mapped in storage/sensorthings/entities.py;
this module only shapes what those SELECTs answer.
"""

from __future__ import annotations

import math
from functools import lru_cache

from protocol.quantities import QUANTITIES
from protocol.units import UNITS
from storage.sensorthings import ENTITY_SETS, EntitySet
from storage.tenants import Principal

__all__ = ["CONFORMANCE", "MQTT_CREATE", "MQTT_RECEIVE", "entity_json", "id_text", "members", "query_params", "self_link"]

_REQ = "http://www.opengis.net/spec/iot_sensing/1.1/req/"
CONFORMANCE = [
    _REQ + "datamodel",
    _REQ + "resource-path/resource-path-to-entities",
    _REQ + "request-data",
    _REQ + "create-update-delete",
    _REQ + "data-array/data-array",
]
# the MQTT extension (§14): announced, each with the broker in `endpoints`, where the broker is configured
MQTT_RECEIVE = _REQ + "receive-updates-via-mqtt/receive-updates"
MQTT_CREATE = _REQ + "create-observations-via-mqtt/observations-creation"


@lru_cache(maxsize=1)
def _vocabulary() -> dict[str, list[str | None]]:
    units = sorted(UNITS.values(), key=lambda u: u.senml)
    quantities = sorted(QUANTITIES.values(), key=lambda q: q.name)
    return {
        "u_senml": [u.senml for u in units], "u_name": [u.name for u in units],
        "u_symbol": [u.symbol for u in units], "u_definition": [u.definition for u in units],
        "q_name": [q.name for q in quantities], "q_label": [q.label or q.name for q in quantities],
        "q_definition": [q.definition or None for q in quantities],
        "q_description": [q.description for q in quantities],
    }


def query_params(principal: Principal) -> dict[str, object]:
    """The named parameters every entity set's SELECT takes: the caller's
    organisation (visibility) and the vocabulary."""
    return {"org_slug": principal.org_slug, "org_id": principal.org_id, **_vocabulary()}


def id_text(key: object) -> str:
    """An id as it appears in a URL: 42, or 'text' with quotes doubled."""
    if isinstance(key, int):
        return str(key)
    return "'" + str(key).replace("'", "''") + "'"


def self_link(base: str, entity: EntitySet, key: object) -> str:
    return f"{base}/{entity.name}({id_text(key)})"


def _value(kind: str, value: object) -> object:
    if kind == "num" and isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    return value


def members(entity: EntitySet, select: tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
    """The members of an entity's JSON, in order, for `select` (all when empty):
    (JSON key, "field" | "self" | "nav", field or link name)."""
    wanted = {"id" if s == "@iot.id" else s for s in select}
    out: list[tuple[str, str, str]] = []
    if not select or "id" in wanted:
        out.append(("@iot.id", "field", "id"))
    if not select or "@iot.selfLink" in wanted:
        out.append(("@iot.selfLink", "self", ""))
    out += [(name, "field", name) for name, field in entity.fields.items()
            if name != "id" and (name in wanted if select else field.held)]
    out += [(f"{name}@iot.navigationLink", "nav", name) for name in entity.links if not select or name in wanted]
    return out


def entity_json(base: str, entity: EntitySet, row: dict, *, select: tuple[str, ...] = ()) -> dict:
    """One entity as the standard's JSON, with the properties `select` names (all when empty)."""
    link = self_link(base, entity, row["id"])
    out: dict[str, object] = {}
    for key, kind, name in members(entity, select):
        if kind == "field":
            if name in row:
                out[key] = _value(entity.fields[name].type, row[name])
        elif kind == "self":
            out[key] = link
        else:
            out[key] = f"{link}/{name}"
    return out


def fields_for(entity: EntitySet, select: tuple[str, ...]) -> list[str]:
    """The entity's fields a response needs (id always)."""
    if not select:
        return list(entity.fields)
    wanted = {"id" if s == "@iot.id" else s for s in select}
    return [f for f in entity.fields if f in wanted or f == "id"]


def check_select(entity: EntitySet, select: tuple[str, ...]) -> str | None:
    """The first name of `select` that is not a property of the entity set, or None."""
    for name in select:
        if name not in entity.fields and name not in entity.links and name not in ("@iot.id", "@iot.selfLink"):
            return name
    return None


ENTITY_NAMES = list(ENTITY_SETS)
