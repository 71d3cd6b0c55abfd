"""SensorThings updates and deletions, mapped onto registry changes.

    PATCH/PUT Things(id)        properties.enabled       → enable/disable the device (and its broker login)
                                Locations: [GeoJSON | {"@iot.id": n}] → move the device ([] removes its Location)
    PATCH/PUT Locations(id)     location (GeoJSON Point) → the device's lat/lon
    PATCH/PUT Datastreams(id)   unitOfMeasurement, ObservedProperty {"@iot.id"} → the series' unit and
                                quantity (only while it holds no Observations: they would change meaning);
                                properties.intervalSeconds, low, high → the series' expected interval, bounds
    PATCH/PUT Sensors(id)       nothing of a Sensor is held apart from its device (see below)
    DELETE Things(id)           the device, its series and all their data (storage.deletion.delete_device)
    DELETE Datastreams(id)      the series and its data (storage.deletion.delete_series)
    DELETE Sensors(id)          the Datastreams of that Sensor (the standard's cascade); the device stays
    DELETE Locations(id)        the device's location (its HistoricalLocation and FeatureOfInterest go with it)

Every other property (a Thing's name, which is its device id and topic; the
descriptions and names citylab derives from the registry; observationType,
phenomenonTime, ...) may be sent with its current value — so that a client
can PUT back what it read — and is refused with 400 naming it otherwise. PUT
needs the standard's mandatory properties of the entity; PATCH any subset.
Only provider organisations' provider and admin keys change, and only their
own organisation's entities; every change is in the audit log.
"""

from __future__ import annotations

import json
import math

import psycopg
from fastapi import FastAPI

from api.deps import actor
from api.errors import Problem
from api.sensorthings.onboarding import audit, check_provider, location_of, quantity_of, unit_of
from api.sensorthings.paths import PathError, parse_path
from api.sensorthings.resources import read_created
from citylab.broker_security import device_role
from storage import deletion, tenants
from storage.sensorthings import write
from storage.tenants import Principal

__all__ = ["delete_entity", "update_entity"]

MANDATORY = {   # OGC 18-088 Table 5 ff.: the properties a PUT must carry
    "Things": ("name", "description"),
    "Locations": ("name", "description", "encodingType", "location"),
    "Datastreams": ("name", "description", "unitOfMeasurement", "observationType"),
    "Sensors": ("name", "description", "encodingType", "metadata"),
}
_SETTABLE = {
    "Things": {"properties", "Locations"},
    "Locations": {"location"},
    "Datastreams": {"unitOfMeasurement", "ObservedProperty", "properties", "Thing", "Sensor"},
    "Sensors": set(),
}


def _target(path: str, verb: str) -> tuple[str, int]:
    try:
        resource = parse_path(path)
    except PathError as exc:
        raise Problem(exc.status, str(exc)) from None
    name = resource.entity.name
    if not resource.single or resource.prop or resource.ref or len(resource.steps) != 1:
        raise Problem(405, f"{verb} applies to one entity by id, e.g. {name}(1), not to {path}")
    if name not in MANDATORY:
        raise Problem(501, f"{verb} of {name} is not supported by this server: Observations are appended "
                           "through the ingest pipeline; ObservedProperties, HistoricalLocations and "
                           "FeaturesOfInterest follow from the registry")
    key = resource.steps[0].key
    if not isinstance(key, int):
        raise Problem(404, f"no {resource.entity.singular} {key!r} of your organisation")
    return name, key


def _same(a: object, b: object) -> bool:
    def norm(value: object) -> object:
        return json.loads(json.dumps(value, sort_keys=True, default=str))
    return norm(a) == norm(b)


def _derived(entity_set: str, current: dict, body: dict) -> None:
    """Refuse a change of what citylab derives from the registry."""
    for name, value in body.items():
        if name in _SETTABLE[entity_set] or name.startswith("@iot.") or name.endswith("@iot.navigationLink"):
            continue
        if name not in current or not _same(current[name], value):
            what = "the device id, also its topic" if entity_set == "Things" and name == "name" else \
                "derived from the registry"
            raise Problem(400, f"{name} of a {entity_set[:-1]} is {what} and cannot be changed here "
                               f"(it is {json.dumps(current.get(name))})")


def _number(props: dict, name: str, old: float | None) -> float | None:
    if name not in props:
        return old
    value = props[name]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Problem(400, f"properties.{name} must be a finite number or null")
    return float(value)


def _fixed_properties(current: dict, props: dict, settable: set[str], entity: str) -> None:
    for name, value in props.items():
        if name not in settable and not _same((current.get("properties") or {}).get(name), value):
            raise Problem(400, f"properties.{name} of a {entity} is derived from the registry and cannot be "
                               f"changed here; you may change {', '.join(sorted(settable)) or 'none of them'}")


def _update_thing(app: FastAPI, conn: psycopg.Connection, principal: Principal, key: int, body: dict,
                  current: dict) -> dict:
    device = write.device_of_thing_row(conn, org=principal.org_slug, thing_id=key)
    changes: dict[str, object] = {}
    props = body.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            raise Problem(400, "properties of a Thing is a JSON object")
        _fixed_properties(current, props, {"enabled"}, "Thing")
        enabled = props.get("enabled", device["enabled"])
        if not isinstance(enabled, bool):
            raise Problem(400, "properties.enabled must be true or false")
        if enabled != device["enabled"]:
            dynsec = getattr(app.state, "dynsec", None)
            if device["mqtt_username"] and dynsec is None:
                raise Problem(503, "the device has broker credentials and the broker's dynamic security is "
                                   "not configured on this server")
            tenants.set_device_enabled(conn, org=principal.org_slug, device=device["device"], enabled=enabled)
            if device["mqtt_username"]:
                (dynsec.enable_client if enabled else dynsec.disable_client)(device["mqtt_username"])
            changes["enabled"] = enabled
    if "Locations" in body:
        lat, lon = location_of(conn, principal, body)
        write.set_device_location(conn, org=principal.org_slug, device=device["device"], lat=lat, lon=lon)
        changes["location"] = None if lat is None else [lon, lat]
    return {"device": device["device"], **changes}


def _update_location(conn: psycopg.Connection, principal: Principal, key: int, body: dict) -> dict:
    device = write.device_of_thing_row(conn, org=principal.org_slug, thing_id=key)
    if "location" in body:
        lat, lon = location_of(conn, principal, {"Locations": [{"location": body["location"]}]})
        write.set_device_location(conn, org=principal.org_slug, device=device["device"], lat=lat, lon=lon)
        return {"device": device["device"], "location": [lon, lat]}
    return {"device": device["device"]}


def _update_datastream(conn: psycopg.Connection, principal: Principal, key: int, body: dict,
                       current: dict) -> dict:
    series = write.series_row(conn, org=principal.org_slug, series_id=key)
    for link in ("Thing", "Sensor"):   # a Datastream stays with its device (Thing and Sensor share the id)
        ref = body.get(link)
        if ref is not None and not (isinstance(ref, dict) and ref.get("@iot.id") == series["thing_id"]):
            raise Problem(400, f"a Datastream stays with its device: {link} must be "
                               f"{{\"@iot.id\": {series['thing_id']}}}; create a Datastream of the other Thing")
    quantity = quantity_of(conn, body["ObservedProperty"]) if "ObservedProperty" in body else series["quantity"]
    unit = unit_of(body) if "unitOfMeasurement" in body else series["unit"]
    if (quantity, unit) != (series["quantity"], series["unit"]) and series["has_readings"]:
        raise Problem(409, f"Datastream {key} holds Observations in {series['unit']} of {series['quantity']}; "
                           "its unit and ObservedProperty stay (create a new Datastream instead)")
    if quantity != series["quantity"] and write.series_of_device(
            conn, org=principal.org_slug, device=series["device"], quantity=quantity) is not None:
        raise Problem(409, f"the Thing already has a Datastream of {quantity}")
    props = body.get("properties") or {}
    if not isinstance(props, dict):
        raise Problem(400, "properties of a Datastream is a JSON object")
    _fixed_properties(current, {k: v for k, v in props.items() if k not in ("quantity", "unit")},
                      {"intervalSeconds", "low", "high"}, "Datastream")
    interval = _number(props, "intervalSeconds", series["interval_s"])
    low, high = _number(props, "low", series["low"]), _number(props, "high", series["high"])
    if interval is not None and interval <= 0:
        raise Problem(400, "properties.intervalSeconds must be positive")
    if low is not None and high is not None and low > high:
        raise Problem(400, f"properties.low ({low}) must not exceed properties.high ({high})")
    write.update_series(conn, org=principal.org_slug, series_id=key, quantity=quantity, unit=unit,
                        interval_s=interval, low=low, high=high)
    return {"device": series["device"], "series": key, "quantity": quantity, "unit": unit,
            "intervalSeconds": interval, "low": low, "high": high}


def _owned(conn: psycopg.Connection, principal: Principal, entity_set: str, key: int) -> bool:
    if entity_set == "Datastreams":
        return write.series_row(conn, org=principal.org_slug, series_id=key) is not None
    device = write.device_of_thing_row(conn, org=principal.org_slug, thing_id=key)
    if device is None:
        return False
    return entity_set != "Locations" or device["lat"] is not None


def update_entity(app: FastAPI, conn: psycopg.Connection, principal: Principal, *, base: str, path: str,
                  body: object, replace: bool) -> dict:
    """PATCH (`replace` False) or PUT an entity of the key's organisation; the entity as it is now."""
    verb = "PUT" if replace else "PATCH"
    entity_set, key = _target(path, verb)
    check_provider(principal)
    if not isinstance(body, dict):
        raise Problem(400, f"{verb} takes the entity as a JSON object")
    if not _owned(conn, principal, entity_set, key):
        raise Problem(404, f"no {entity_set[:-1]} {key} of your organisation")
    if replace:
        missing = [m for m in MANDATORY[entity_set] if m not in body]
        if missing:
            raise Problem(400, f"PUT replaces the whole {entity_set[:-1]}: {', '.join(missing)} missing "
                               "(PATCH changes some properties)")
    if body.get("@iot.id", key) != key:
        raise Problem(400, f"@iot.id is {key} and cannot be changed")
    current = read_created(conn, principal, base=base, entity_set=entity_set, key=key)
    _derived(entity_set, current, body)
    with conn.transaction():
        if entity_set == "Things":
            detail = _update_thing(app, conn, principal, key, body, current)
        elif entity_set == "Locations":
            detail = _update_location(conn, principal, key, body)
        elif entity_set == "Datastreams":
            detail = _update_datastream(conn, principal, key, body, current)
        else:
            detail = {"device": write.device_of_thing_row(conn, org=principal.org_slug, thing_id=key)["device"]}
        audit(conn, principal, f"{entity_set[:-1].lower()}.update", detail)
    return read_created(conn, principal, base=base, entity_set=entity_set, key=key)


def delete_entity(app: FastAPI, conn: psycopg.Connection, principal: Principal, *, path: str) -> None:
    """DELETE an entity of the key's organisation (see the module docstring for what goes with it)."""
    entity_set, key = _target(path, "DELETE")
    check_provider(principal)
    if not _owned(conn, principal, entity_set, key):
        raise Problem(404, f"no {entity_set[:-1]} {key} of your organisation")
    try:
        _delete(app, conn, principal, entity_set, key)
    except deletion.InUse as exc:
        raise Problem(409, str(exc)) from None


def _who(principal: Principal) -> dict:
    return {"actor": actor(principal), "org_id": principal.org_id, "key_id": principal.key_id}


def _delete(app: FastAPI, conn: psycopg.Connection, principal: Principal, entity_set: str, key: int) -> None:
    org = principal.org_slug
    if entity_set == "Datastreams":
        deleted = deletion.delete_series(conn, org=org, series_ids=[key], **_who(principal))
        audit(conn, principal, "series.delete", {"series": key, "readings": deleted.readings})
        return
    device = write.device_of_thing_row(conn, org=org, thing_id=key)
    if entity_set == "Locations":
        write.set_device_location(conn, org=org, device=device["device"], lat=None, lon=None)
        audit(conn, principal, "location.delete", {"device": device["device"]})
        return
    if entity_set == "Sensors":
        ids = [s[0] for s in tenants.device_series(conn, org=org, device=device["device"])]
        deleted = deletion.delete_series(conn, org=org, series_ids=ids, **_who(principal))
        audit(conn, principal, "sensor.delete", {"device": device["device"], "series": list(deleted.series),
                                                 "readings": deleted.readings})
        return
    dynsec = getattr(app.state, "dynsec", None)
    if device["mqtt_username"] and dynsec is None:
        raise Problem(503, "the device has broker credentials and the broker's dynamic security is not "
                           "configured on this server")
    deleted = deletion.delete_device(conn, org=org, device=device["device"], **_who(principal))
    if device["mqtt_username"]:
        dynsec.run([{"command": "deleteClient", "username": device["mqtt_username"]},
                    {"command": "deleteRole", "rolename": device_role(org, device["device"])}], ignore_errors=True)
    audit(conn, principal, "device.delete", {"device": device["device"], "series": list(deleted.series),
                                             "readings": deleted.readings})
