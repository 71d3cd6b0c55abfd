"""The history of a context entity linked to one of our devices.

A context entity with a Relationship to one of the writer's devices
(`urn:ngsi-ld:Device:<org>:<device>` or one of our entity ids) feeds that
device's series with its Properties that carry `observedAt`
(`api.ngsild.observations.linked_readings`): numbers become readings, text,
booleans and JSON values typed readings (`storage.typed`). The temporal API
answers such an attribute from those stores, so its history is what was
observed, not only the current instance the context store keeps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from api.ngsild.observations import quantity_of
from protocol.quantities import QUANTITIES
from storage import ngsild as store
from storage.typed import typed_between

__all__ = ["LinkedInstance", "linked_history"]


@dataclass(frozen=True, slots=True)
class LinkedInstance:
    time: datetime
    value: Any
    unit_code: str | None


def linked_history(conn, series: dict[str, int], iri: str, attribute: dict[str, Any], *,
                   start: datetime | None, end: datetime | None, limit: int, newest_first: bool
                   ) -> tuple[int, list[LinkedInstance]] | None:
    """(series id, instances in [start, end)) of one attribute of a linked entity, oldest first;
    None when the attribute feeds no series of the device."""
    found = quantity_of(iri) if attribute.get("type", "Property") == "Property" else None
    series_id = series.get(found[0]) if found is not None else None
    if series_id is None:
        return None
    spec = found[1]
    scale = QUANTITIES[spec.quantity].sdm.scale if spec is not None else 1.0
    unit_code = spec.unit_code if spec is not None else attribute.get("unitCode")
    out = [LinkedInstance(r.time, r.value * scale, unit_code)
           for r in store.readings_between(conn, series_id, start, end, limit=limit, newest_first=newest_first)]
    out += [LinkedInstance(t, json.loads(bytes(v)) if isinstance(v, (bytes, memoryview)) else v, None)
            for t, v in typed_between(conn, series_id, start, end, limit=limit, newest_first=newest_first)]
    out.sort(key=lambda i: i.time)
    return series_id, out[-limit:] if newest_first else out[:limit]
