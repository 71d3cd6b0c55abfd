"""Geo-queries (clause 4.10): `georel`, `geometry`, `coordinates`, `geoproperty`.

    georel       near;maxDistance==<m> | near;minDistance==<m> | within | contains
                 | intersects | equals | disjoint | overlaps
    geometry     Point | Polygon | MultiPolygon (LineString, MultiPoint and
                 MultiLineString are refused: 400)
    coordinates  the GeoJSON coordinates of that geometry, as JSON

Our entities' location is the device's point, so `within`/`intersects` of a
polygon is point-in-polygon over the outer rings (holes are not subtracted;
docs/ngsi-ld.md).
"""

from __future__ import annotations

import json
import math

from api.ngsild.errors import NgsiLdError
from storage.ngsild import GeoFilter

__all__ = ["parse_geo"]

_RELATIONS = ("near", "within", "contains", "intersects", "equals", "disjoint", "overlaps")


def _position(value: object) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) not in (2, 3)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        raise NgsiLdError("BadRequestData", f"{value!r} is not a position [longitude, latitude]")
    lon, lat = float(value[0]), float(value[1])
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise NgsiLdError("BadRequestData", f"position {value!r} is outside longitude -180..180, latitude -90..90")
    return lon, lat


def _ring(value: object) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list) or len(value) < 4:
        raise NgsiLdError("BadRequestData", "a polygon ring is a list of at least 4 positions")
    ring = tuple(_position(p) for p in value)
    if ring[0] != ring[-1]:
        raise NgsiLdError("BadRequestData", "a polygon ring must end at its first position")
    return ring


def parse_geo(georel: str | None, geometry: str | None, coordinates: str | None,
              geoproperty: str | None = None) -> GeoFilter | None:
    if georel is None and geometry is None and coordinates is None:
        return None
    if georel is None or geometry is None or coordinates is None:
        raise NgsiLdError("BadRequestData", "a geo-query needs georel, geometry and coordinates together")
    relation, *modifiers = georel.split(";")
    if relation not in _RELATIONS:
        raise NgsiLdError("BadRequestData", f"georel {relation!r} is not one of {', '.join(_RELATIONS)}")
    max_m = min_m = None
    for modifier in modifiers:
        name, sep, text = modifier.partition("==")
        try:
            distance = float(text)
        except ValueError:
            distance = -1.0
        if relation != "near" or not sep or name not in ("maxDistance", "minDistance") or distance < 0:
            raise NgsiLdError("BadRequestData", f"georel modifier {modifier!r} is not maxDistance==<m> or "
                                                "minDistance==<m> of near")
        if name == "maxDistance":
            max_m = distance
        else:
            min_m = distance
    if relation == "near" and max_m is None and min_m is None:
        raise NgsiLdError("BadRequestData", "georel near needs maxDistance==<m> or minDistance==<m>")
    try:
        coords = json.loads(coordinates)
    except ValueError:
        raise NgsiLdError("BadRequestData", f"coordinates {coordinates!r} are not a JSON array") from None
    if geometry == "Point":
        return GeoFilter(relation, point=_position(coords), max_m=max_m, min_m=min_m)  # type: ignore[arg-type]
    if relation == "near":
        raise NgsiLdError("BadRequestData", "georel near takes a Point geometry")
    if geometry == "Polygon":
        if not isinstance(coords, list) or not coords:
            raise NgsiLdError("BadRequestData", "Polygon coordinates are a list of rings")
        return GeoFilter(relation, polygons=(_ring(coords[0]),))  # type: ignore[arg-type]
    if geometry == "MultiPolygon":
        if not isinstance(coords, list) or not coords or not all(isinstance(p, list) and p for p in coords):
            raise NgsiLdError("BadRequestData", "MultiPolygon coordinates are a list of polygons")
        return GeoFilter(relation, polygons=tuple(_ring(p[0]) for p in coords))  # type: ignore[arg-type]
    if geometry in ("LineString", "MultiPoint", "MultiLineString"):
        raise NgsiLdError("BadRequestData", f"geometry {geometry} is not supported by this broker "
                                            "(Point, Polygon and MultiPolygon are)")
    raise NgsiLdError("BadRequestData", f"geometry {geometry!r} is not a GeoJSON geometry type")
