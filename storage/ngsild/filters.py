"""The filters of NGSI-LD queries as a small tree, and the SQL fragments they
compile to that every kind of entity shares (comparisons, geo-queries).

The face parses `q` and geo-queries into these nodes (with attribute terms
already resolved to the names the storage knows); `derived` and `context`
compile them to parameterised conditions: a node decides which fixed fragment
is used, its values are bound parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Union

from psycopg import sql

__all__ = ["And", "Comparison", "Exists", "Filter", "GeoFilter", "Or", "Params", "compare", "geo_condition"]

# The query tree -------------------------------------------------------------

Operator = Literal["==", "!=", ">", ">=", "<", "<=", "~=", "!~="]
Scalar = Union[float, str, bool, datetime]


@dataclass(frozen=True, slots=True)
class Comparison:
    """`attribute[.observedAt] op value`; `value` is a scalar, a tuple (value
    list, == / != only) or a `(low, high)` range with `range=True`. `attribute`
    is a model attribute name, `dateObserved`, or None (not an attribute of
    any model: the term never holds)."""

    attribute: str | None
    op: Operator
    value: Scalar | tuple[Scalar, ...]
    path: tuple[str, ...] = ()    # sub-attribute, e.g. ("observedAt",)
    range: bool = False
    trail: tuple[str, ...] = ()   # keys into a structured value, attr[key][key]


@dataclass(frozen=True, slots=True)
class Exists:
    attribute: str | None
    path: tuple[str, ...] = ()
    trail: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class And:
    terms: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    terms: tuple[Filter, ...]


Filter = Union[Comparison, Exists, And, Or]


@dataclass(frozen=True, slots=True)
class GeoFilter:
    """A geo-query on the device's point location (WGS 84, lon/lat).

    `near`: within `max_m` / beyond `min_m` metres of `point`; `within`: in one
    of `polygons` (outer rings); `equals`/`intersects` with a point: the same
    point; `disjoint`: the negation of within/intersects."""

    relation: Literal["near", "within", "intersects", "equals", "disjoint", "contains", "overlaps"]
    point: tuple[float, float] | None = None
    max_m: float | None = None
    min_m: float | None = None
    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()


_OPS = {"==": "=", "!=": "<>", ">": ">", ">=": ">=", "<": "<", "<=": "<="}


class Params:
    """Bound values of one statement; `add` names the next placeholder."""

    def __init__(self, base: dict[str, Any]) -> None:
        self.values = base

    def add(self, value: Any) -> sql.Composable:
        name = f"q{len(self.values)}"
        self.values[name] = value
        return sql.Placeholder(name)


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare(column: sql.Composable, term: Comparison, params: Params, *, kind: type) -> sql.Composable:
    """`column op value` for values of `kind` (float or datetime); FALSE when the value is of another kind."""
    ok = (lambda v: _numeric(v)) if kind is float else (lambda v: isinstance(v, datetime))
    cast = sql.SQL("::float8") if kind is float else sql.SQL("::timestamptz")
    if term.op in ("~=", "!~="):
        return sql.SQL("FALSE")  # patterns apply to strings; our derived attributes are numbers and times
    if term.range:
        low, high = term.value  # type: ignore[misc]
        if not (ok(low) and ok(high)):
            return sql.SQL("FALSE")
        inside = sql.SQL("{c} BETWEEN {lo}{t} AND {hi}{t}").format(c=column, lo=params.add(low), hi=params.add(high), t=cast)
        return inside if term.op == "==" else sql.SQL("NOT ({})").format(inside)
    if isinstance(term.value, tuple):
        values = [v for v in term.value if ok(v)]
        array = sql.SQL("::float8[]") if kind is float else sql.SQL("::timestamptz[]")
        member = sql.SQL("{c} = ANY({v}{t})").format(c=column, v=params.add(values), t=array)
        return member if term.op == "==" else sql.SQL("NOT ({})").format(member)
    if not ok(term.value):
        return sql.SQL("TRUE") if term.op == "!=" else sql.SQL("FALSE")
    return sql.SQL("{c} {op} {v}{t}").format(c=column, op=sql.SQL(_OPS[term.op]), v=params.add(term.value), t=cast)


_EARTH_M = 6_371_008.8

# haversine great-circle distance in metres from the point ({plat}, {plon}) to ({lat}, {lon})
_DISTANCE = sql.SQL(
    "(2 * {r} * asin(sqrt(power(sin(radians({lat} - {plat}) / 2), 2)"
    " + cos(radians({plat})) * cos(radians({lat})) * power(sin(radians({lon} - {plon}) / 2), 2))))"
)


def geo_condition(geo: GeoFilter, params: Params, *, lat: sql.Composable, lon: sql.Composable) -> sql.Composable:
    """The condition of a geo-query on a point stored in the `lat`, `lon` columns."""
    located = sql.SQL("{} IS NOT NULL").format(lat)
    if geo.relation == "near":
        assert geo.point is not None
        plon = sql.SQL("{}::float8").format(params.add(geo.point[0]))
        plat = sql.SQL("{}::float8").format(params.add(geo.point[1]))
        distance = _DISTANCE.format(r=sql.Literal(_EARTH_M), lat=lat, lon=lon, plat=plat, plon=plon)
        parts = [located]
        if geo.max_m is not None:
            parts.append(sql.SQL("{} <= {}::float8").format(distance, params.add(geo.max_m)))
        if geo.min_m is not None:
            parts.append(sql.SQL("{} >= {}::float8").format(distance, params.add(geo.min_m)))
        return sql.SQL("({})").format(sql.SQL(" AND ").join(parts))
    if geo.point is not None:   # a point geometry: only the same point matches
        same = sql.SQL("({lon} = {x}::float8 AND {lat} = {y}::float8)").format(
            lon=lon, lat=lat, x=params.add(geo.point[0]), y=params.add(geo.point[1]))
        if geo.relation in ("equals", "intersects", "within", "contains"):
            return same
        if geo.relation == "disjoint":
            return sql.SQL("({} AND NOT {})").format(located, same)
        return sql.SQL("FALSE")  # a point overlaps nothing
    rings = ["(" + ",".join(f"({x!r},{y!r})" for x, y in ring) + ")" for ring in geo.polygons]
    inside = sql.SQL("({located} AND EXISTS (SELECT 1 FROM unnest({rings}::polygon[]) p(g)"
                     " WHERE p.g @> point({lon}, {lat})))").format(
        located=located, rings=params.add(rings), lon=lon, lat=lat)
    if geo.relation in ("within", "intersects"):
        return inside
    if geo.relation == "disjoint":
        return sql.SQL("({} AND NOT {})").format(located, inside)
    return sql.SQL("FALSE")  # a point neither contains nor overlaps nor equals a polygon
