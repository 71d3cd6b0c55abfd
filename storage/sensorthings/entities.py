"""citylab's tables as the SensorThings entity sets: the one place where our
model is mapped onto the standard's.

    Thing             a device                     id  devices.thing_id
    Location          the device's location        id  devices.thing_id (devices with lat/lon)
    HistoricalLocation  where the device was put   id  devices.thing_id (one per located device)
    Sensor            the device's hardware        id  devices.thing_id
    FeatureOfInterest where the device observes    id  devices.thing_id (devices with lat/lon)
    Datastream        a series (device, quantity)  id  series.id
    ObservedProperty  a quantity                   id  observed_properties.id
    Observation       a reading                    id  '{series id}-{UTC microseconds}'

Each entity set is a fixed SELECT naming its columns by the standard's
property names, restricted to what the caller's organisation may read
(`storage.products.READABLE_SERIES`), plus private key columns (`_thing`,
`_series`, `_op`) that the navigation links join on. The vocabulary (unit
names, symbols and definitions; ObservedProperty labels and definitions) comes
in as array parameters from the caller, read from protocol/units.py and
protocol/quantities.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.products import READABLE_SERIES

__all__ = ["ENTITY_SETS", "EntitySet", "Field", "Link", "OBSERVATION_TYPE", "by_singular"]

OBSERVATION_TYPE = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str          # num | text | time | json | geo | interval
    held: bool = True  # False: an optional property citylab never holds (always null), shown only when selected
    same_as: str | None = None  # always equal to that field (its JSON text is computed once per entity)


@dataclass(frozen=True, slots=True)
class Link:
    name: str          # the navigation property, e.g. "Datastreams"
    target: str        # the entity set it leads to
    target_key: str    # column of the target ...
    source_key: str    # ... equal to this column of the source
    many: bool


@dataclass(frozen=True, slots=True)
class EntitySet:
    name: str          # "Things"
    singular: str      # "Thing"
    source: str        # SELECT ... (named parameters org_slug, org_id and the vocabulary arrays)
    fields: dict[str, Field]
    links: dict[str, Link]
    order: tuple[str, ...] = ("id",)   # the total order that makes paging stable


def _fields(*spec: tuple[str, str], unheld: tuple[str, ...] = (), same: dict[str, str] | None = None
            ) -> dict[str, Field]:
    return {name: Field(name, kind, name not in unheld, (same or {}).get(name)) for name, kind in spec}


def _links(*spec: tuple[str, str, str, str, bool]) -> dict[str, Link]:
    return {s[0]: Link(*s) for s in spec}


# Devices are keyed by (org, device): a device is visible when it is the caller's or
# one of its series is readable.
_VISIBLE_DEVICES = (
    "(SELECT v.org, v.device FROM devices v WHERE v.org = %(org_slug)s"
    " UNION SELECT rs.org, rs.device FROM series rs WHERE rs.id IN (" + READABLE_SERIES + "))"
)
_UNITS = (
    "unnest(%(u_senml)s::text[], %(u_name)s::text[], %(u_symbol)s::text[], %(u_definition)s::text[])"
    " AS u(senml, name, symbol, definition)"
)
_QUANTITIES = (
    "unnest(%(q_name)s::text[], %(q_label)s::text[], %(q_definition)s::text[], %(q_description)s::text[])"
    " AS q(name, label, definition, description)"
)
_LOCATED = "d.lat IS NOT NULL AND d.lon IS NOT NULL"
_POINT = "point(d.lon, d.lat)"

THINGS = EntitySet(
    "Things", "Thing",
    "SELECT d.thing_id AS id, d.device AS name,"
    " d.kind || ' device ' || d.device || ' of ' || d.org AS description,"
    " jsonb_strip_nulls(jsonb_build_object('organisation', d.org, 'kind', d.kind, 'enabled', d.enabled,"
    " 'gateway', d.gateway, 'devEUI', d.dev_eui)) AS properties"
    " FROM devices d WHERE (d.org, d.device) IN " + _VISIBLE_DEVICES,
    _fields(("id", "num"), ("name", "text"), ("description", "text"), ("properties", "json")),
    _links(("Locations", "Locations", "id", "id", True),
           ("HistoricalLocations", "HistoricalLocations", "_thing", "id", True),
           ("Datastreams", "Datastreams", "_thing", "id", True)),
)

LOCATIONS = EntitySet(
    "Locations", "Location",
    "SELECT d.thing_id AS id, d.device AS name, 'Location of ' || d.device AS description,"
    " 'application/geo+json'::text AS \"encodingType\", " + _POINT + " AS location, NULL::jsonb AS properties"
    " FROM devices d WHERE " + _LOCATED + " AND (d.org, d.device) IN " + _VISIBLE_DEVICES,
    _fields(("id", "num"), ("name", "text"), ("description", "text"), ("encodingType", "text"),
            ("location", "geo"), ("properties", "json")),
    _links(("Things", "Things", "id", "id", True),
           ("HistoricalLocations", "HistoricalLocations", "_thing", "id", True)),
)

HISTORICAL_LOCATIONS = EntitySet(
    "HistoricalLocations", "HistoricalLocation",
    "SELECT d.thing_id AS id, d.created_at AS time, d.thing_id AS _thing"
    " FROM devices d WHERE " + _LOCATED + " AND (d.org, d.device) IN " + _VISIBLE_DEVICES,
    _fields(("id", "num"), ("time", "time")),
    _links(("Thing", "Things", "id", "_thing", False),
           ("Locations", "Locations", "id", "_thing", True)),
)

SENSORS = EntitySet(
    "Sensors", "Sensor",
    "SELECT d.thing_id AS id, d.device AS name, 'The ' || d.kind || ' hardware of device ' || d.device AS description,"
    " 'text/plain'::text AS \"encodingType\","
    " 'citylab ' || d.kind || ' device ' || d.device || ' of ' || d.org AS metadata, NULL::jsonb AS properties"
    " FROM devices d WHERE (d.org, d.device) IN " + _VISIBLE_DEVICES,
    _fields(("id", "num"), ("name", "text"), ("description", "text"), ("encodingType", "text"),
            ("metadata", "text"), ("properties", "json")),
    _links(("Datastreams", "Datastreams", "_thing", "id", True)),
)

FEATURES_OF_INTEREST = EntitySet(
    "FeaturesOfInterest", "FeatureOfInterest",
    "SELECT d.thing_id AS id, d.device AS name, 'Where device ' || d.device || ' measures' AS description,"
    " 'application/geo+json'::text AS \"encodingType\", " + _POINT + " AS feature, NULL::jsonb AS properties"
    " FROM devices d WHERE " + _LOCATED + " AND (d.org, d.device) IN " + _VISIBLE_DEVICES,
    _fields(("id", "num"), ("name", "text"), ("description", "text"), ("encodingType", "text"),
            ("feature", "geo"), ("properties", "json")),
    _links(("Observations", "Observations", "_thing", "id", True)),
)

_FIRST = "(SELECT min(r.time) FROM readings r WHERE r.series_id = s.id)"
_LAST = "(SELECT max(r.time) FROM readings r WHERE r.series_id = s.id)"

DATASTREAMS = EntitySet(
    "Datastreams", "Datastream",
    "SELECT s.id, d.device || '/' || s.quantity AS name,"
    " coalesce(q.description, s.quantity) || ', measured by ' || d.device AS description,"
    " jsonb_build_object('name', coalesce(u.name, s.unit), 'symbol', coalesce(u.symbol, s.unit),"
    " 'definition', u.definition) AS \"unitOfMeasurement\","
    " '" + OBSERVATION_TYPE + "'::text AS \"observationType\","
    " CASE WHEN " + _LOCATED + " THEN " + _POINT + " END AS \"observedArea\","
    " " + _FIRST + " AS \"phenomenonTime\", " + _LAST + " AS \"_phenomenonTimeEnd\","
    " " + _FIRST + " AS \"resultTime\", " + _LAST + " AS \"_resultTimeEnd\","
    " jsonb_strip_nulls(jsonb_build_object('quantity', s.quantity, 'unit', s.unit,"
    " 'intervalSeconds', s.interval_s, 'low', s.low, 'high', s.high)) AS properties,"
    " d.thing_id AS _thing, op.id AS _op"
    " FROM series s JOIN devices d ON d.org = s.org AND d.device = s.device"
    " JOIN observed_properties op ON op.quantity = s.quantity"
    " LEFT JOIN " + _UNITS + " ON u.senml = s.unit"
    " LEFT JOIN " + _QUANTITIES + " ON q.name = s.quantity"
    " WHERE s.id IN (" + READABLE_SERIES + ")",
    _fields(("id", "num"), ("name", "text"), ("description", "text"), ("unitOfMeasurement", "json"),
            ("observationType", "text"), ("observedArea", "geo"), ("phenomenonTime", "interval"),
            ("resultTime", "interval"), ("properties", "json")),
    _links(("Thing", "Things", "id", "_thing", False),
           ("Sensor", "Sensors", "id", "_thing", False),
           ("ObservedProperty", "ObservedProperties", "id", "_op", False),
           ("Observations", "Observations", "_series", "id", True)),
)

OBSERVED_PROPERTIES = EntitySet(
    "ObservedProperties", "ObservedProperty",
    "SELECT op.id, coalesce(q.label, op.quantity) AS name,"
    " coalesce(q.definition, 'urn:citylab:quantity:' || op.quantity) AS definition,"
    " coalesce(q.description, op.quantity) AS description,"
    " jsonb_build_object('quantity', op.quantity) AS properties"
    " FROM observed_properties op LEFT JOIN " + _QUANTITIES + " ON q.name = op.quantity"
    " WHERE op.quantity IN (SELECT qs.quantity FROM series qs WHERE qs.id IN (" + READABLE_SERIES + "))",
    _fields(("id", "num"), ("name", "text"), ("definition", "text"), ("description", "text"),
            ("properties", "json")),
    _links(("Datastreams", "Datastreams", "_op", "id", True)),
)

OBSERVATIONS = EntitySet(
    "Observations", "Observation",
    "SELECT concat(r.series_id, '-', (extract(epoch FROM r.time) * 1000000)::bigint) AS id,"
    " r.time AS \"phenomenonTime\", r.time AS \"resultTime\", nullif(r.value, 'NaN'::float8) AS result,"
    " NULL::jsonb AS \"resultQuality\", NULL::text AS \"validTime\", NULL::jsonb AS parameters,"
    " r.series_id AS _series, r.time AS _time, d.thing_id AS _thing"
    " FROM readings r JOIN series s ON s.id = r.series_id JOIN devices d ON d.org = s.org AND d.device = s.device"
    " WHERE r.series_id IN (" + READABLE_SERIES + ")",
    _fields(("id", "text"), ("phenomenonTime", "time"), ("resultTime", "time"), ("result", "num"),
            ("resultQuality", "json"), ("validTime", "text"), ("parameters", "json"),
            unheld=("resultQuality", "validTime", "parameters"), same={"resultTime": "phenomenonTime"}),
    _links(("Datastream", "Datastreams", "id", "_series", False),
           ("FeatureOfInterest", "FeaturesOfInterest", "id", "_thing", False)),
    order=("_series", "_time"),
)

ENTITY_SETS: dict[str, EntitySet] = {e.name: e for e in (
    THINGS, LOCATIONS, HISTORICAL_LOCATIONS, DATASTREAMS, SENSORS, OBSERVED_PROPERTIES, OBSERVATIONS,
    FEATURES_OF_INTEREST,
)}


def by_singular(name: str) -> EntitySet | None:
    return next((e for e in ENTITY_SETS.values() if e.singular == name), None)
