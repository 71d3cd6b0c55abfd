"""Observations from NGSI-LD producers become readings through the API's one ingest
pipeline (`api.ingest_door`, shared with /v1/ingest and SensorThings), exactly as
MQTT packs do.

Each entity's readings become one SenML pack on `lab/{org}/{device}/up` with
boot id `ngsi-ld` and a sequence number derived from its content, so that a
producer repeating a request is de-duplicated like a redelivered pack. The
pipeline authorises, validates, de-duplicates, dead-letters, counts and
commits; only then does the face answer. A dead-lettered pack is answered with
its reason.

`Reading`s come from attributes that are numeric Properties: of the model's
measured attributes for our device entities (`urn:ngsi-ld:<Model>:<org>:<device>`),
and, for a context entity linked to one of our devices by a Relationship, of
the model attribute with that IRI or else the quantity named by the
attribute's last IRI segment. The value's `unitCode` is read with the
vocabulary table: the model's code takes the model's scale, another code of
the same dimension converts with `protocol.units`. The other values of such a
linked entity's Properties with `observedAt` keep their history in the typed
store (`storage.typed`) through the same pipeline: text as SenML `vs`, true and
false as `vb`, JSON objects and arrays as `vd` (their UTF-8 JSON text).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from api.ingest_door import IngestDoor
from api.ngsild.errors import NgsiLdError
from api.ngsild.vocabulary import MODELS, Model, ModelAttribute
from ingest import Message
from protocol.quantities import QUANTITIES
from protocol.senml import SENML_JSON, Pack, Record, encode_pack
from protocol.units import UNITS, convert, convertible

__all__ = ["Reading", "commit_readings", "linked_readings", "model_readings", "now_s", "quantity_of", "seconds_of"]

BOOT_ID = "ngsi-ld"
RECORDS_PER_PACK = 5_000
_QUANTITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Reading:
    quantity: str
    unit: str | None       # SenML unit of `value`
    value: float | str | bool | bytes
    time: float            # UTC seconds
    field: str = "v"       # the SenML field: "v" a number, "vs" text, "vb" a boolean, "vd" data (JSON)


def seconds_of(text: str) -> float:
    """UTC seconds of an ISO 8601 date-time with zone."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _number(attribute: dict[str, Any]) -> float | None:
    value = attribute.get("value")
    if attribute.get("type") != "Property" or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _in_quantity_unit(spec: ModelAttribute, value: float, unit_code: str | None, name: str) -> tuple[float, str]:
    """The value in the quantity's SenML unit, read with the vocabulary table."""
    q = QUANTITIES[spec.quantity]
    sdm = q.sdm
    assert sdm is not None
    if unit_code is None or unit_code == spec.unit_code:
        return value / sdm.scale, q.unit
    for unit in UNITS.values():
        if unit.cefact == unit_code and (unit.senml == q.unit or convertible(unit.senml, q.unit)):
            return float(convert(value, unit.senml, q.unit)), q.unit
    raise NgsiLdError("BadRequestData", f"{name}: unitCode {unit_code!r} cannot be read as {spec.attribute} "
                                        f"(the model's unit is {spec.unit_code!r})")


def _instances(attribute: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return attribute if isinstance(attribute, list) else [attribute]


def model_readings(model: Model, attributes: dict[str, Any], *, default_time: float) -> list[Reading]:
    """Readings of our device entity of `model` from its measured attributes.

    `attributes` maps IRIs to one attribute or (temporal) a list of instances.
    Refuses attributes the entity cannot take: nothing a producer sends is
    silently dropped."""
    accepted = {a.iri: a for a in model.attributes}
    readings: list[Reading] = []
    for iri, attribute in attributes.items():
        spec = accepted.get(iri)
        if spec is None:
            continue
        for instance in _instances(attribute):
            value = _number(instance)
            if value is None:
                raise NgsiLdError("BadRequestData", f"{spec.attribute} must be a Property with a numeric value")
            at = seconds_of(instance["observedAt"]) if "observedAt" in instance else default_time
            number, unit = _in_quantity_unit(spec, value, instance.get("unitCode"), spec.attribute)
            readings.append(Reading(spec.quantity, unit, number, at))
    return readings


def quantity_of(iri: str) -> tuple[str, ModelAttribute | None] | None:
    """The quantity a linked entity's attribute feeds: the model attribute with that IRI, else
    the quantity named by the IRI's last segment (None when that is no quantity name)."""
    for model in MODELS.values():
        for spec in model.attributes:
            if spec.iri == iri:
                return spec.quantity, spec
    name = re.split(r"[/#:]", iri)[-1]
    return (name, None) if _QUANTITY.match(name) else None


def _typed(instance: dict[str, Any]) -> tuple[str | bool | bytes, str] | None:
    """(value, SenML field) of a Property instance whose value is not a number."""
    value = instance.get("value")
    if instance.get("type", "Property") != "Property" or value is None:
        return None
    if isinstance(value, bool):
        return value, "vb"
    if isinstance(value, str):
        return value, "vs"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True).encode(), "vd"
    return None


def linked_readings(attributes: dict[str, Any]) -> list[Reading]:
    """Readings of a context entity linked to a device: its Properties with observedAt (numbers
    as readings, other values as typed readings)."""
    readings = []
    for iri, attribute in attributes.items():
        for instance in _instances(attribute):
            if not isinstance(instance, dict) or "observedAt" not in instance:
                continue
            found = quantity_of(iri)
            if found is None:
                continue
            quantity, spec = found
            value = _number(instance)
            if value is None:
                typed = _typed(instance)
                if typed is not None:
                    readings.append(Reading(quantity, None, typed[0], seconds_of(instance["observedAt"]), typed[1]))
                continue
            code = instance.get("unitCode")
            if spec is not None:
                number, unit = _in_quantity_unit(spec, value, code, quantity)
            else:
                units = [u.senml for u in UNITS.values() if u.cefact == code] if code else []
                number, unit = value, (units[0] if units else None)
            readings.append(Reading(quantity, unit, number, seconds_of(instance["observedAt"])))
    return readings


def commit_readings(door: IngestDoor, packs: list[tuple[str, str, list[Reading]]], *,
                    units: dict[tuple[str, str], str | None]) -> list[str | None]:
    """Commit (org, device, readings) packs through the app's ingest door; the reason each pack
    was refused, None where it was stored."""
    messages: list[Message] = []
    owners: list[int] = []
    for index, (org, device, readings) in enumerate(packs):
        for start in range(0, len(readings), RECORDS_PER_PACK):
            chunk = readings[start:start + RECORDS_PER_PACK]
            messages.append(_message(org, device, chunk, units))
            owners.append(index)
    reasons: list[str | None] = [None] * len(packs)
    if not messages:
        return reasons
    result = door.commit(messages)
    by_payload = {(m.topic, m.payload): owners[i] for i, m in enumerate(messages)}
    for dead in result.dead_letters:
        owner = by_payload.get((dead.topic, dead.payload))
        if owner is not None and reasons[owner] is None:
            reasons[owner] = f"{dead.reason}: {dead.detail}"
    return reasons


def _message(org: str, device: str, readings: list[Reading], units: dict[tuple[str, str], str | None]) -> Message:
    records = []
    for r in readings:
        unit, value = r.unit, r.value
        registered = units.get((device, r.quantity), unit)
        if (r.field == "v" and registered != unit and unit is not None and registered is not None
                and convertible(unit, registered)):
            value, unit = float(convert(value, unit, registered)), registered
        records.append(Record(f"{device}/{r.quantity}", value, r.time, unit, r.field))
    digest = hashlib.sha256(repr((org, device, [(x.name, x.unit, x.value, x.time) for x in records])).encode())
    seq = int.from_bytes(digest.digest()[:8], "big") >> 2
    payload = encode_pack(Pack(BOOT_ID, seq, tuple(records)), content_type=SENML_JSON)
    return Message(topic=f"lab/{org}/{device}/up", payload=payload, mid=0, qos=1, content_type=SENML_JSON,
                   received_us=int(time.time() * 1e6))


def now_s() -> float:
    return datetime.now(UTC).timestamp()
