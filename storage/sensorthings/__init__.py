"""storage.sensorthings: the SensorThings API's view of citylab's tables.

The entity sets (entities.py, the one mapping between our model and the
standard's), the expression tree the face parses its query options into
(tree.py), its compiler to parameterised SQL (compile.py), the read queries
(read.py) and what the MQTT extension needs (feed.py).
"""

from __future__ import annotations

from storage.sensorthings.compile import NotSupported, QueryError, parse_observation_id
from storage.sensorthings.entities import ENTITY_SETS, OBSERVATION_TYPE, EntitySet, Field, Link, by_singular
from storage.sensorthings.read import (
    JsonPage, Member, Page, Step, count_entities, count_linked, read_entities, read_entities_json, read_linked,
    JsonText, read_entities_text, readable_series_ids,
)
from storage.sensorthings.feed import datastream_target, device_series_ids, own_feature_ids, own_thing_ids, series_features
from storage.sensorthings.write import writable_datastream

__all__ = [
    "ENTITY_SETS",
    "OBSERVATION_TYPE",
    "EntitySet",
    "Field",
    "JsonPage",
    "JsonText",
    "Link",
    "Member",
    "NotSupported",
    "Page",
    "QueryError",
    "Step",
    "by_singular",
    "count_entities",
    "count_linked",
    "datastream_target",
    "device_series_ids",
    "own_feature_ids",
    "own_thing_ids",
    "parse_observation_id",
    "read_entities",
    "read_entities_json",
    "read_entities_text",
    "read_linked",
    "readable_series_ids",
    "series_features",
    "writable_datastream",
]
