"""The geospatial functions of `$filter` (geo.* and the st_* relations of OGC Simple
Features) between a location property and a literal geometry.

Locations are points (longitude, latitude) held as PostgreSQL `point`; literal
geometries become `point`, open `path` (LineString) or `polygon` parameters.
Each relation is decided from where the point lies — interior, boundary or
exterior of the geometry — which is exact for points; `st_relate` compares
the DE-9IM matrix that follows with the pattern.

A location the caller reads through a grant that reduces location precision
(GDPR minimisation: a grid or an H3 cell, `api.privacy.coarsen`) is served
coarsened, and a filter must not reveal more than it: such a location takes
part in no spatial relation and has no `geo.distance` (`visible`: it is NULL,
as an unknown location is), so a geo `$filter` never selects by the exact
point. The caller's own devices and open data are filtered as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg import sql

from storage.products import COARSENED_DEVICES
from storage.sensorthings.entities import EntitySet
from storage.sensorthings.errors import NotSupported, QueryError
from storage.sensorthings.tree import Call, Geometry, Literal

if TYPE_CHECKING:
    from storage.sensorthings.compile import Builder

__all__ = ["RELATIONS", "geometry", "relation", "visible"]

RELATIONS = {"geo.intersects", "st_equals", "st_disjoint", "st_touches", "st_within", "st_overlaps",
             "st_crosses", "st_intersects", "st_contains", "st_relate"}
_SWAPPED = {"st_within": "st_contains", "st_contains": "st_within"}


_COARSENED = sql.SQL("EXISTS (SELECT 1 FROM (" + COARSENED_DEVICES + ") c WHERE point(c.lon, c.lat) ~= {})")


def visible(point: sql.Composable) -> sql.Composable:
    """A location property as a filter may use it: NULL where the caller sees it coarsened."""
    return sql.SQL("(CASE WHEN {} THEN NULL ELSE {} END)").format(_COARSENED.format(point), point)


def geometry(b: Builder, geom: Geometry) -> sql.Composable:
    """A literal geometry as a bound `point`, `path` or `polygon` parameter."""
    points = ",".join(f"({x!r},{y!r})" for x, y in geom.coords)
    if geom.kind == "Point":
        return b.param(points, "point")
    if geom.kind == "LineString":
        return b.param(f"[{points}]", "path")
    return b.param(f"({points})", "polygon")


def relation(b: Builder, call: Call, entity: EntitySet, alias: sql.Identifier) -> sql.Composable:
    """The SQL boolean of a spatial relation between a geometry property and a literal."""
    name = call.name
    args = list(call.args)
    if len(args) != (3 if name == "st_relate" else 2):
        raise QueryError(f"{name}() takes {3 if name == 'st_relate' else 2} arguments")
    if isinstance(args[0], Geometry) and not isinstance(args[1], Geometry):
        if name == "st_relate":
            raise NotSupported("st_relate() with a literal geometry first is not supported")
        name = _SWAPPED.get(name, name)
        args[0], args[1] = args[1], args[0]
    geom = args[1]
    if not isinstance(geom, Geometry) or isinstance(args[0], Geometry):
        raise NotSupported(f"{name}() is supported between a location property and a literal geometry")
    point, kind = b.value(args[0], entity, alias)
    if kind != "geo":
        raise QueryError(f"{name}() takes a geometry property (location, feature or observedArea)")
    point = visible(point)
    interior, boundary = _locate(b, point, geom)
    intersects = sql.SQL("({} OR {})").format(interior, boundary)
    if name in ("geo.intersects", "st_intersects"):
        return intersects
    if name == "st_disjoint":
        return sql.SQL("(NOT {})").format(intersects)
    if name == "st_touches":
        return boundary
    if name == "st_within":
        return interior
    if name in ("st_equals", "st_contains"):
        return interior if geom.kind == "Point" else sql.SQL("({} IS NOT NULL AND false)").format(point)
    if name in ("st_overlaps", "st_crosses"):
        return sql.SQL("({} IS NOT NULL AND false)").format(point)
    pattern = args[2]
    if not (isinstance(pattern, Literal) and pattern.type == "text" and _valid_pattern(pattern.value)):
        raise QueryError("st_relate() takes a DE-9IM pattern of nine characters out of T F * 0 1 2")
    dims = {"Point": ("0", "F"), "LineString": ("1", "0"), "Polygon": ("2", "1")}[geom.kind]
    if geom.kind == "LineString" and geom.coords[0] == geom.coords[-1]:
        dims = ("1", "F")

    def matrix(where: str) -> str:
        row_i = "".join("0" if where == w else "F" for w in ("interior", "boundary", "exterior"))
        return row_i + "FFF" + dims[0] + dims[1] + "2"

    cases = [sql.SQL("true" if _relate(matrix(w), pattern.value) else "false")
             for w in ("interior", "boundary", "exterior")]
    return sql.SQL("(CASE WHEN {} IS NULL THEN NULL WHEN {} THEN {} WHEN {} THEN {} ELSE {} END)").format(
        point, interior, cases[0], boundary, cases[1], cases[2])


def _locate(b: Builder, point: sql.Composable, geom: Geometry) -> tuple[sql.Composable, sql.Composable]:
    """(point in the interior of geom, point on its boundary) as SQL booleans."""
    if geom.kind == "Point":
        return sql.SQL("({} ~= {})").format(point, geometry(b, geom)), sql.SQL("false")
    if geom.kind == "LineString":
        ends = [Geometry("Point", (c,)) for c in (geom.coords[0], geom.coords[-1])]
        if geom.coords[0] == geom.coords[-1]:
            return sql.SQL("({} <@ {})").format(point, geometry(b, geom)), sql.SQL("false")
        on_end = sql.SQL("({} ~= {} OR {} ~= {})").format(point, geometry(b, ends[0]), point,
                                                          geometry(b, ends[1]))
        on_line = sql.SQL("({} <@ {})").format(point, geometry(b, geom))
        return sql.SQL("({} AND NOT {})").format(on_line, on_end), on_end
    ring = Geometry("LineString", (*geom.coords, geom.coords[0]))
    on_ring = sql.SQL("({} <@ {})").format(point, geometry(b, ring))
    inside = sql.SQL("({} @> {})").format(geometry(b, geom), point)
    return sql.SQL("({} AND NOT {})").format(inside, on_ring), on_ring


def _valid_pattern(pattern: object) -> bool:
    return isinstance(pattern, str) and len(pattern) == 9 and set(pattern.upper()) <= set("TF*012")


def _relate(matrix: str, pattern: str) -> bool:
    for m, p in zip(matrix, pattern.upper()):
        if p == "*":
            continue
        if p == "T" and m == "F" or p == "F" and m != "F" or p in "012" and m != p:
            return False
    return True
