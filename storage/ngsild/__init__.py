"""The queries of the NGSI-LD face.

    filters         the tree of `q` and geo-queries, and the SQL fragments it compiles to
    derived         entities derived from our devices and series: latest values, history
    context         context entities of any type, stored per organisation
    subscriptions   subscriptions and their delivery status
    changes         the outbox of subscriptions: what ingest and the face committed
"""

from __future__ import annotations

from storage.ngsild.derived import (
    DeviceEntity,
    EntityAttribute,
    EntityKey,
    EntitySeries,
    Instance,
    Period,
    Vocabulary,
    aggregate_readings,
    device_entities,
    device_series,
    device_units,
    entity_types,
    known_devices,
    readable_tenants,
    readings_between,
    series_of_entity,
    series_time_range,
)
from storage.ngsild.filters import And, Comparison, Exists, Filter, GeoFilter, Or

__all__ = [
    "And",
    "Comparison",
    "DeviceEntity",
    "EntityAttribute",
    "EntityKey",
    "EntitySeries",
    "Exists",
    "Filter",
    "GeoFilter",
    "Instance",
    "Or",
    "Period",
    "Vocabulary",
    "aggregate_readings",
    "device_entities",
    "device_series",
    "device_units",
    "entity_types",
    "known_devices",
    "readable_tenants",
    "readings_between",
    "series_of_entity",
    "series_time_range",
]
