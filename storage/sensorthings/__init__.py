"""storage.sensorthings: the SensorThings API's view of citylab's tables.

The entity sets (entities.py, the one mapping between our model and the
standard's), the expression tree the face parses its query options into
(tree.py), its compiler to parameterised SQL (compile.py) and the read queries
(read.py).
"""

from __future__ import annotations

from storage.sensorthings.compile import NotSupported, QueryError, parse_observation_id
from storage.sensorthings.entities import ENTITY_SETS, OBSERVATION_TYPE, EntitySet, Field, Link, by_singular
from storage.sensorthings.read import (
    JsonPage, Member, Page, Step, count_entities, count_linked, read_entities, read_entities_json, read_linked,
)
from storage.sensorthings.write import writable_datastream

__all__ = [
    "ENTITY_SETS",
    "OBSERVATION_TYPE",
    "EntitySet",
    "Field",
    "JsonPage",
    "Link",
    "Member",
    "NotSupported",
    "Page",
    "QueryError",
    "Step",
    "by_singular",
    "count_entities",
    "count_linked",
    "parse_observation_id",
    "read_entities",
    "read_entities_json",
    "read_linked",
    "writable_datastream",
]
