"""NGSI-LD entities from our devices, and their representations.

An entity is one device and one Smart Data Model (`vocabulary.Model`):

    id            urn:ngsi-ld:<Type>:<org>:<device>   (stable: names, not database ids)
    type          the model, e.g. AirQualityObserved
    location      GeoProperty, the device's point (when it has one)
    dateObserved  Property, the latest reading time over the entity's attributes
    <attribute>   Property per quantity: latest value in the model's unit, with
                  observedAt and unitCode (UN/CEFACT, protocol.units)
    name, dataProvider   the device name and the organisation (GSMA commons)

plus what a model requires: NoiseLevelObserved's `dateObservedFrom`/`To` (the
series' reporting interval ending at dateObserved) and ACMeasurement's
`phaseType` (`singlePhase`: citylab's meters report totals; see
docs/ngsi-ld.md).

Entities are built with attribute IRIs as keys (`NativeEntity`) and rendered
against the request's context term by term: normalized, concise or keyValues
(clause 4.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from api.ngsild.context import Context
from api.ngsild.errors import NgsiLdError
from api.ngsild.vocabulary import MODELS, Model
from storage.ngsild import DeviceEntity, EntityKey
from storage.ngsild.context import ContextEntity

__all__ = ["Format", "NativeEntity", "context_native", "entity_id", "native_entity", "parse_entity_id", "render"]

Format = Literal["normalized", "concise", "keyValues"]

_NGSI = "https://uri.etsi.org/ngsi-ld/"
LOCATION = _NGSI + "location"
_SDM = "https://smartdatamodels.org/"
DATE_OBSERVED = _SDM + "dateObserved"
NAME = _SDM + "name"
DATA_PROVIDER = _SDM + "dataProvider"
CREATED_AT = "createdAt"
MODIFIED_AT = "modifiedAt"


def entity_id(model: str, org: str, device: str) -> str:
    return f"urn:ngsi-ld:{model}:{org}:{device}"


def parse_entity_id(text: str) -> EntityKey | None:
    """The (model, org, device) of one of our entity ids; None for any other id."""
    parts = text.split(":", 4)
    if len(parts) != 5 or parts[0].lower() != "urn" or parts[1] != "ngsi-ld" or not all(parts[2:]):
        return None
    if parts[2] not in MODELS:
        return None
    return EntityKey(parts[2], parts[3], parts[4])


def check_uri(text: str, what: str = "entity id") -> None:
    scheme, colon, rest = text.partition(":")
    if not colon or not scheme or not scheme[0].isalpha() or not rest or any(c.isspace() for c in text):
        raise NgsiLdError("BadRequestData", f"the {what} {text!r} is not a URI")


def _time(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _model_attr_iri(model: Model, name: str) -> str:
    return f"{_SDM}dataModel.{model.domain}/{name}"


@dataclass(frozen=True, slots=True)
class NativeEntity:
    id: str
    type: str                     # the type IRI
    attributes: dict[str, dict[str, Any]]   # attribute IRI -> normalized attribute
    created_at: datetime
    modified_at: datetime | None


def context_native(row: ContextEntity) -> NativeEntity:
    return NativeEntity(row.id, row.type, row.attributes, row.created_at, row.modified_at)


def native_entity(row: DeviceEntity) -> NativeEntity:
    model = MODELS[row.model]
    attrs: dict[str, dict[str, Any]] = {}
    if row.lat is not None and row.lon is not None:
        attrs[LOCATION] = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [row.lon, row.lat]}}
    if row.observed is not None:
        attrs[DATE_OBSERVED] = {"type": "Property", "value": _time(row.observed)}
        if row.model == "NoiseLevelObserved":
            start = row.observed - timedelta(seconds=row.interval_s or 0)
            attrs[_model_attr_iri(model, "dateObservedFrom")] = {"type": "Property", "value": _time(start)}
            attrs[_model_attr_iri(model, "dateObservedTo")] = {"type": "Property", "value": _time(row.observed)}
    if row.model == "ACMeasurement":
        attrs[_model_attr_iri(model, "phaseType")] = {"type": "Property", "value": "singlePhase"}
    attrs[NAME] = {"type": "Property", "value": row.device}
    attrs[DATA_PROVIDER] = {"type": "Property", "value": row.org}
    for attribute in row.attributes:
        if attribute.time is None or attribute.value is None:
            continue
        spec = model.attribute_named(attribute.attribute)
        attrs[spec.iri] = {"type": "Property", "value": attribute.value, "observedAt": _time(attribute.time),
                           "unitCode": spec.unit_code}
    return NativeEntity(entity_id(row.model, row.org, row.device), model.type_iri, attrs, row.created_at,
                        row.modified_at)


_KEYWORDS = {"type", "value", "object", "observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt",
             "instanceId", "languageMap", "json", "valueList", "objectList", "objectType", "vocab", "lang"}
_VALUE_KEYS = ("value", "object", "languageMap", "json", "valueList", "objectList", "vocab")


def _shape(attribute: dict[str, Any], fmt: Format, ctx: Context) -> Any:
    """One attribute in `fmt`, sub-attribute names compacted."""
    if fmt == "keyValues":
        return next((attribute[k] for k in _VALUE_KEYS if k in attribute), None)
    out = {(k if k in _KEYWORDS else ctx.compact(k)): (v if k in _KEYWORDS else _shape(v, fmt, ctx))
           for k, v in attribute.items()}
    if fmt == "concise":
        kind = out.pop("type", None)
        if kind == "Relationship" or kind == "ListRelationship":
            return out
        if set(out) == {"value"}:
            return out["value"]
    return out


def render(
    entity: NativeEntity, ctx: Context, *, fmt: Format, pick: set[str] | None = None, omit: set[str] | None = None,
    sys_attrs: bool = False, with_context: bool = False,
) -> dict[str, Any]:
    """The entity compacted against `ctx` in `fmt`; `pick`/`omit` are IRIs."""
    out: dict[str, Any] = {"id": entity.id, "type": ctx.compact(entity.type)}
    for iri, attribute in entity.attributes.items():
        if (pick is not None and iri not in pick) or (omit is not None and iri in omit):
            continue
        out[ctx.compact(iri)] = _shape(attribute, fmt, ctx)
    if sys_attrs and fmt != "keyValues":
        out[CREATED_AT] = _time(entity.created_at)
        if entity.modified_at is not None:
            out[MODIFIED_AT] = _time(entity.modified_at)
    if with_context:
        out["@context"] = ctx.value
    return out
