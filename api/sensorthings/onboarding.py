"""SensorThings creation of Things and Datastreams, mapped onto device onboarding.

    POST Things                 {"name", "description", "Locations": [GeoJSON Point], "Datastreams": [...]}
                                → a device of the key's organisation (storage.tenants.onboard_device)
    POST Datastreams            {"name", "unitOfMeasurement", "ObservedProperty", "Thing": {"@iot.id"}}
    POST Things(id)/Datastreams → a series of that device

A Datastream's quantity is its ObservedProperty: an existing one by `@iot.id`,
or a new one whose `definition` (or `name`) is a quantity of the vocabulary
(protocol/quantities.py), or whose `properties.quantity` names one. Its SenML
unit is found from `unitOfMeasurement` (definition URI, symbol or SenML name,
protocol/units.py). Only provider organisations' provider and admin keys
create; MQTT credentials for such a device come from
`POST /v1/devices/{device}/credentials` when it needs them.
"""

from __future__ import annotations

import re

import psycopg

from api.deps import actor
from api.errors import Problem
from protocol.quantities import QUANTITIES
from protocol.units import UNITS
from storage import tenants
from storage.audit import record_change
from storage.sensorthings import write
from storage.tenants import Principal

__all__ = ["create_datastream", "create_thing"]

_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _quantity(conn: psycopg.Connection, observed: object) -> str:
    if not isinstance(observed, dict):
        raise Problem(400, "a Datastream needs its ObservedProperty: {\"@iot.id\": n} or a new one")
    if "@iot.id" in observed:
        found = write.quantity_of_observed_property(conn, observed["@iot.id"]) \
            if isinstance(observed["@iot.id"], int) else None
        if found is None:
            raise Problem(400, f"no ObservedProperty {observed['@iot.id']!r}")
        return found
    wanted = (observed.get("properties") or {}).get("quantity") if isinstance(observed.get("properties"), dict) else None
    for q in QUANTITIES.values():
        if wanted == q.name or observed.get("definition") == q.definition or observed.get("name") in (q.name, q.label):
            return q.name
    known = ", ".join(sorted(QUANTITIES))
    raise Problem(400, f"the ObservedProperty {observed.get('name')!r} is not a quantity of the lab; give its "
                       f"definition from the vocabulary or properties.quantity, one of: {known}")


def _unit(datastream: dict) -> str | None:
    uom = datastream.get("unitOfMeasurement")
    if not isinstance(uom, dict):
        raise Problem(400, "a Datastream needs its unitOfMeasurement (name, symbol, definition)")
    for unit in UNITS.values():
        if uom.get("definition") == unit.definition or uom.get("symbol") in (unit.symbol, unit.senml) \
                and uom.get("name") in (None, unit.name, unit.senml):
            return unit.senml
    if uom.get("symbol") is None and uom.get("definition") is None:
        return None
    raise Problem(400, f"unit {uom!r} is not a SenML unit of the lab's vocabulary (protocol/units.py)")


def _location(thing: dict) -> tuple[float | None, float | None]:
    locations = thing.get("Locations") or []
    if not locations:
        return None, None
    if not isinstance(locations, list) or len(locations) != 1 or not isinstance(locations[0], dict):
        raise Problem(400, "a Thing of the lab has one Location")
    geometry = locations[0].get("location") or {}
    coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
    if geometry.get("type") != "Point" or not isinstance(coords, list) or len(coords) < 2 \
            or not all(isinstance(c, (int, float)) for c in coords[:2]):
        raise Problem(400, "a Location of the lab is a GeoJSON Point")
    lon, lat = float(coords[0]), float(coords[1])
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise Problem(400, f"the Location ({lon}, {lat}) is outside WGS 84 longitude/latitude")
    return lat, lon


def _provider(principal: Principal) -> None:
    if principal.org_kind != "provider":
        raise Problem(403, f"only provider organisations register devices; yours is a {principal.org_kind} organisation")


def _audit(conn: psycopg.Connection, principal: Principal, action: str, detail: dict) -> None:
    record_change(conn, actor=actor(principal), action=action, org_id=principal.org_id, key_id=principal.key_id,
                  owner_org=principal.org_id, detail={**detail, "via": "sensorthings"})


def create_thing(conn: psycopg.Connection, principal: Principal, body: object) -> int:
    """Onboard the Thing (deep insert of Locations and Datastreams) as a device; its Thing id."""
    _provider(principal)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not _DEVICE.match(body["name"]):
        raise Problem(400, "a Thing needs a name that is a device id: letters, digits, '_' and '-', at most 64")
    datastreams = body.get("Datastreams") or []
    if not isinstance(datastreams, list) or not all(isinstance(d, dict) for d in datastreams):
        raise Problem(400, "Datastreams must be a list of Datastreams")
    sensors = [tenants.SensorSpec(_quantity(conn, d.get("ObservedProperty")), _unit(d), None, None, None)
               for d in datastreams]
    if len({s.quantity for s in sensors}) != len(sensors):
        raise Problem(400, "each ObservedProperty may appear once per Thing")
    lat, lon = _location(body)
    try:
        tenants.onboard_device(conn, org=principal.org_slug, device=body["name"], gateway=None, kind="sensor",
                               lat=lat, lon=lon, dev_eui=None, lora_channels=None, sensors=sensors)
    except tenants.DeviceConflict as exc:
        raise Problem(409, str(exc)) from None
    _audit(conn, principal, "device.create", {"device": body["name"], "sensors": [s.quantity for s in sensors]})
    return write.thing_of_device(conn, org=principal.org_slug, device=body["name"])


def create_datastream(conn: psycopg.Connection, principal: Principal, body: object, thing_id: int | None) -> int:
    """A new series of an existing device of the key's organisation; its Datastream id."""
    _provider(principal)
    if not isinstance(body, dict):
        raise Problem(400, "a Datastream is a JSON object")
    if thing_id is None:
        ref = body.get("Thing")
        if not isinstance(ref, dict) or not isinstance(ref.get("@iot.id"), int):
            raise Problem(400, "a Datastream needs its Thing: {\"Thing\": {\"@iot.id\": n}} (new Things with "
                               "their Datastreams: POST Things)")
        thing_id = ref["@iot.id"]
    device = write.device_of_thing(conn, org=principal.org_slug, thing_id=thing_id)
    if device is None:
        raise Problem(404, f"no Thing {thing_id} of your organisation")
    quantity, unit = _quantity(conn, body.get("ObservedProperty")), _unit(body)
    created = write.add_series(conn, org=principal.org_slug, device=device, quantity=quantity, unit=unit)
    if created is None:
        raise Problem(409, f"Thing {thing_id} already has a Datastream of {quantity}: "
                           f"Datastreams({write.series_of_device(conn, org=principal.org_slug, device=device, quantity=quantity)})")
    _audit(conn, principal, "series.create", {"device": device, "quantity": quantity})
    return created
