"""Compile the SensorThings expression tree (storage.sensorthings.tree) into SQL.

Every value from the request becomes a named parameter; identifiers come only
from the entity sets' own field and link names (storage.sensorthings.entities),
so no text of the request is ever part of the statement. Errors:

    QueryError            the query cannot mean anything here (HTTP 400)
     └── NotSupported     a valid construct this server does not implement (HTTP 501)

Geometries (storage.sensorthings.spatial): locations are PostgreSQL points,
literal geometries bound parameters; distances and lengths are in degrees
(planar, as a geometry without a coordinate reference system).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from psycopg import sql

from storage.sensorthings import spatial
from storage.sensorthings.entities import ENTITY_SETS, EntitySet, Link
from storage.sensorthings.errors import NotSupported, QueryError
from storage.sensorthings.tree import (
    Arith, Call, Compare, Expr, Geometry, In, Literal, Logical, Negate, Not, OrderKey, Path,
)

__all__ = ["Builder", "NotSupported", "QueryError", "parse_observation_id"]


_CMP = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_ARITH = {"add": "+", "sub": "-", "mul": "*"}
_STRING_FUNCTIONS = {"tolower": "lower", "toupper": "upper", "trim": "btrim", "length": "length"}
_DATE_PARTS = {"year": "year", "month": "month", "day": "day", "hour": "hour", "minute": "minute",
               "second": "second"}
_MATH = {"round": "round", "floor": "floor", "ceiling": "ceiling"}   # over numeric: halves round away from 0
_UTC_TEXT = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"


class Builder:
    """Parameters and aliases of one statement."""

    def __init__(self, params: dict[str, object]) -> None:
        self.params = dict(params)
        self._n = 0
        self._aliases = 0

    def param(self, value: object, cast: str | None = None) -> sql.Composable:
        name = f"p{self._n}"
        self._n += 1
        self.params[name] = value
        placeholder = sql.Placeholder(name)
        return sql.SQL("{}::{}").format(placeholder, sql.SQL(cast)) if cast else placeholder

    def alias(self) -> sql.Identifier:
        self._aliases += 1
        return sql.Identifier(f"t{self._aliases}")

    @staticmethod
    def source(entity: EntitySet) -> sql.Composable:
        return sql.SQL("(" + entity.source + ")")

    # Columns -----------------------------------------------------------------

    @staticmethod
    def column(alias: sql.Identifier, name: str) -> sql.Composable:
        return sql.SQL("{}.{}").format(alias, sql.Identifier(name))

    def output(self, entity: EntitySet, alias: sql.Identifier, name: str) -> sql.Composable:
        """The JSON-ready text of a field: times as UTC ISO 8601, points as GeoJSON."""
        kind = entity.fields[name].type
        col = self.column(alias, name)
        if kind == "time":
            return sql.SQL("to_char({} AT TIME ZONE 'UTC', " + _UTC_TEXT + ")").format(col)
        if kind == "interval":
            end = self.column(alias, f"_{name}End")
            return sql.SQL(
                "to_char({} AT TIME ZONE 'UTC', " + _UTC_TEXT + ") || '/' || to_char({} AT TIME ZONE 'UTC', "
                + _UTC_TEXT + ")"
            ).format(col, end)
        if kind == "geo":
            return sql.SQL(
                "CASE WHEN {0} IS NOT NULL THEN jsonb_build_object('type', 'Point', 'coordinates',"
                " jsonb_build_array({0}[0], {0}[1])) END"
            ).format(col)
        return col

    # Key conditions ----------------------------------------------------------

    def key_equals(self, entity: EntitySet, alias: sql.Identifier, key: object) -> sql.Composable:
        """`alias` is the entity with id `key` (an Observation id names series and time)."""
        if entity.name == "Observations":
            parsed = parse_observation_id(key)
            if parsed is None:
                return sql.SQL("false")
            series, time = parsed
            return sql.SQL("{} = {} AND {} = {}").format(
                self.column(alias, "_series"), self.param(series), self.column(alias, "_time"),
                self.param(time, "timestamptz"))
        if not isinstance(key, int) or isinstance(key, bool):
            return sql.SQL("false")
        return sql.SQL("{} = {}").format(self.column(alias, "id"), self.param(key))

    def linked(self, link: Link, alias: sql.Identifier, parent: EntitySet, parent_alias_condition) -> sql.Composable:
        """`alias` (of link.target) is linked to a parent row meeting `parent_alias_condition(a)`."""
        inner = self.alias()
        return sql.SQL("{} IN (SELECT {} FROM {} AS {} WHERE {})").format(
            self.column(alias, link.target_key), self.column(inner, link.source_key), self.source(parent), inner,
            parent_alias_condition(inner))

    # Expressions -------------------------------------------------------------

    def predicate(self, expr: Expr, entity: EntitySet, alias: sql.Identifier) -> sql.Composable:
        """A boolean SQL expression for a `$filter` tree."""
        if isinstance(expr, Logical):
            op = sql.SQL(" AND " if expr.op == "and" else " OR ")
            return sql.SQL("({})").format(op.join([self.predicate(expr.left, entity, alias),
                                                   self.predicate(expr.right, entity, alias)]))
        if isinstance(expr, Not):
            return sql.SQL("(NOT coalesce({}, false))").format(self.predicate(expr.operand, entity, alias))
        many = _first_many(expr, entity)
        if many is not None:
            link = entity.links[many]
            target = ENTITY_SETS[link.target]
            inner = self.alias()
            rebound = _rebind(expr, many)
            return sql.SQL("EXISTS (SELECT 1 FROM {} AS {} WHERE {} = {} AND {})").format(
                self.source(target), inner, self.column(inner, link.target_key), self.column(alias, link.source_key),
                self.predicate(rebound, target, inner))
        if isinstance(expr, Compare):
            return self._compare(expr, entity, alias)
        if isinstance(expr, In):
            value, kind = self.value(expr.operand, entity, alias)
            choices = [self._coerce(*self.value(c, entity, alias), kind) for c in expr.choices]
            return sql.SQL("({} IN ({}))").format(value, sql.SQL(", ").join(choices))
        value, kind = self.value(expr, entity, alias)
        if kind not in ("bool", "json"):
            raise QueryError("$filter must be a boolean expression (a comparison, a logical operator or a "
                             "boolean function)")
        return self._coerce(value, kind, "bool")

    def _compare(self, expr: Compare, entity: EntitySet, alias: sql.Identifier) -> sql.Composable:
        left, lkind = self.value(expr.left, entity, alias)
        right, rkind = self.value(expr.right, entity, alias)
        if rkind == "null" or lkind == "null":
            other = left if rkind == "null" else right
            if expr.op not in ("eq", "ne"):
                return sql.SQL("false")
            return sql.SQL("({} IS {}NULL)").format(other, sql.SQL("" if expr.op == "eq" else "NOT "))
        kind = _common(lkind, rkind)
        return sql.SQL("({} {} {})").format(self._coerce(left, lkind, kind), sql.SQL(_CMP[expr.op]),
                                            self._coerce(right, rkind, kind))

    def _coerce(self, value: sql.Composable, kind: str, want: str) -> sql.Composable:
        if kind == want or want in ("any", "null"):
            return value
        if kind == "json":
            if want == "num":
                return sql.SQL("(CASE WHEN jsonb_typeof({0}) = 'number' THEN ({0} #>> '{{}}')::float8 END)").format(value)
            if want == "bool":
                return sql.SQL("(CASE WHEN jsonb_typeof({0}) = 'boolean' THEN ({0} #>> '{{}}')::boolean END)").format(value)
            if want == "time":
                return sql.SQL("(CASE WHEN jsonb_typeof({0}) = 'string' THEN ({0} #>> '{{}}') END)::timestamptz").format(value)
            return sql.SQL("({} #>> '{{}}')").format(value)
        if want == "text":
            return sql.SQL("({})::text").format(value)
        if want == "num" and kind == "text":
            raise QueryError("cannot compare a text with a number")
        return value

    def value(self, expr: Expr, entity: EntitySet, alias: sql.Identifier) -> tuple[sql.Composable, str]:
        """(SQL, kind) of an operand; kind is num | text | bool | time | date | clock | duration | json | geo | null."""
        if isinstance(expr, Literal):
            return self._literal(expr)
        if isinstance(expr, Geometry):
            return spatial.geometry(self, expr), "geo"
        if isinstance(expr, Path):
            return self._path(expr.segments, entity, alias)
        if isinstance(expr, _Bound):
            return self._path(expr.segments, expr.entity, expr.alias)
        if isinstance(expr, Negate):
            value, kind = self.value(expr.operand, entity, alias)
            return sql.SQL("(-{})").format(self._coerce(value, kind, "num")), "num"
        if isinstance(expr, Arith):
            return self._arith(expr, entity, alias)
        if isinstance(expr, Call):
            return self._call(expr, entity, alias)
        if isinstance(expr, (Compare, In, Logical, Not)):
            return self.predicate(expr, entity, alias), "bool"
        raise NotSupported(f"expressions of kind {type(expr).__name__} are not supported")

    def _literal(self, lit: Literal) -> tuple[sql.Composable, str]:
        casts = {"num": None, "text": "text", "bool": "boolean", "time": "timestamptz", "date": "date",
                 "clock": "time", "duration": "interval"}
        if lit.type == "null":
            return sql.SQL("NULL"), "null"
        if lit.type == "num" and isinstance(lit.value, float):
            return self.param(lit.value, "float8"), "num"
        return self.param(lit.value, casts[lit.type]), lit.type

    def _path(self, segments: tuple[str, ...], entity: EntitySet, alias: sql.Identifier) -> tuple[sql.Composable, str]:
        head, rest = segments[0], segments[1:]
        if head in ("@iot.id", "id"):
            head = "id"
        if head in entity.fields:
            field = entity.fields[head]
            col = self.column(alias, head)
            if rest:
                if field.type != "json":
                    raise QueryError(f"{entity.singular}/{head} has no property {'/'.join(rest)}")
                return sql.SQL("({} #> {})").format(col, self.param(list(rest), "text[]")), "json"
            kind = {"interval": "time"}.get(field.type, field.type)
            return col, kind
        if head in entity.links:
            link = entity.links[head]
            if link.many:
                raise QueryError(f"{entity.singular}/{head} is a collection: compare one of its properties")
            if not rest:
                raise QueryError(f"{entity.singular}/{head} is an entity, not a value: name one of its properties")
            target = ENTITY_SETS[link.target]
            if rest in (("id",), ("@iot.id",)) and link.target_key == "id" and link.target != "FeaturesOfInterest":
                # Datastream/id is the Observation's own key column: indexable, and the linked
                # entity is visible whenever this one is (features exist only for located devices).
                return self.column(alias, link.source_key), "num"
            inner = self.alias()
            value, kind = self._path(rest, target, inner)
            return sql.SQL("(SELECT {} FROM {} AS {} WHERE {} = {} LIMIT 1)").format(
                value, self.source(target), inner, self.column(inner, link.target_key),
                self.column(alias, link.source_key)), kind
        raise QueryError(f"{entity.singular} has no property or navigation property {head!r}")

    def _arith(self, expr: Arith, entity: EntitySet, alias: sql.Identifier) -> tuple[sql.Composable, str]:
        left, lkind = self.value(expr.left, entity, alias)
        right, rkind = self.value(expr.right, entity, alias)
        if lkind == "time" and rkind == "duration" and expr.op in ("add", "sub"):
            return sql.SQL("({} {} {})").format(left, sql.SQL(_ARITH[expr.op]), right), "time"
        if lkind == "time" and rkind == "time" and expr.op == "sub":
            return sql.SQL("({} - {})").format(left, right), "duration"
        left, right = self._coerce(left, lkind, "num"), self._coerce(right, rkind, "num")
        if expr.op == "div":
            return sql.SQL("(({})::float8 / nullif(({})::float8, 0))").format(left, right), "num"
        if expr.op == "mod":
            return sql.SQL("mod(({})::numeric, nullif(({})::numeric, 0))").format(left, right), "num"
        return sql.SQL("({} {} {})").format(left, sql.SQL(_ARITH[expr.op]), right), "num"

    def _call(self, call: Call, entity: EntitySet, alias: sql.Identifier) -> tuple[sql.Composable, str]:
        name = call.name
        if name in spatial.RELATIONS:
            return spatial.relation(self, call, entity, alias), "bool"
        args = [self.value(a, entity, alias) for a in call.args]

        def text(i: int) -> sql.Composable:
            return self._coerce(args[i][0], args[i][1], "text")

        def num(i: int) -> sql.Composable:
            return self._coerce(args[i][0], args[i][1], "num")

        def time(i: int) -> sql.Composable:
            value, kind = args[i]
            if kind not in ("time", "json"):
                raise QueryError(f"{name}() takes a date and time")
            return sql.SQL("({} AT TIME ZONE 'UTC')").format(self._coerce(value, kind, "time"))

        if name == "substringof":
            return sql.SQL("(strpos({}, {}) > 0)").format(text(1), text(0)), "bool"
        if name == "contains":
            return sql.SQL("(strpos({}, {}) > 0)").format(text(0), text(1)), "bool"
        if name == "startswith":
            return sql.SQL("(left({0}, length({1})) = {1})").format(text(0), text(1)), "bool"
        if name == "endswith":
            return sql.SQL("(right({0}, length({1})) = {1})").format(text(0), text(1)), "bool"
        if name in _STRING_FUNCTIONS:
            kind = "num" if name == "length" else "text"
            return sql.SQL("{}({})").format(sql.SQL(_STRING_FUNCTIONS[name]), text(0)), kind
        if name == "indexof":
            return sql.SQL("(strpos({}, {}) - 1)").format(text(0), text(1)), "num"
        if name == "substring":
            if len(args) == 3:
                return sql.SQL("substr({}, ({})::int + 1, ({})::int)").format(text(0), num(1), num(2)), "text"
            return sql.SQL("substr({}, ({})::int + 1)").format(text(0), num(1)), "text"
        if name == "concat":
            return sql.SQL("({} || {})").format(text(0), text(1)), "text"
        if name in _DATE_PARTS:
            return sql.SQL("extract({} FROM {})::int").format(sql.SQL(_DATE_PARTS[name]), time(0)), "num"
        if name == "fractionalseconds":
            return sql.SQL("(mod(extract(microseconds FROM {})::bigint, 1000000) / 1e6)").format(time(0)), "num"
        if name == "date":
            return sql.SQL("({})::date").format(time(0)), "date"
        if name == "time":
            return sql.SQL("({})::time").format(time(0)), "clock"
        if name == "totaloffsetminutes":
            time(0)
            return sql.SQL("0"), "num"   # every time is served in UTC
        if name == "now":
            return sql.SQL("now()"), "time"
        if name == "mindatetime":
            return self.param(datetime(1, 1, 1, tzinfo=UTC), "timestamptz"), "time"
        if name == "maxdatetime":
            return self.param(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "timestamptz"), "time"
        if name in _MATH:
            return sql.SQL("{}(({})::numeric)::float8").format(sql.SQL(_MATH[name]), num(0)), "num"
        if name == "geo.distance":
            (a, ak), (b, bk) = args
            if ak != "geo" or bk != "geo":
                raise QueryError("geo.distance() takes two geometries")
            a, b = (v if isinstance(e, Geometry) else spatial.visible(v) for (v, _), e in zip(args, call.args))
            return sql.SQL("({} <-> {})").format(a, b), "num"
        if name == "geo.length":
            value, kind = args[0]
            if kind != "geo":
                raise QueryError("geo.length() takes a geometry")
            geom = call.args[0]
            if isinstance(geom, Geometry) and geom.kind == "LineString":
                return sql.SQL("(@-@ {})").format(value), "num"
            return sql.SQL("(CASE WHEN {} IS NULL THEN NULL ELSE 0.0 END)").format(value), "num"
        raise NotSupported(f"the function {name}() is not supported")

    # Ordering ----------------------------------------------------------------

    @staticmethod
    def keyset_order(entity: EntitySet, keys: tuple[OrderKey, ...]) -> str | None:
        """"asc" / "desc" / "key" when entities in this order can be paged by keyset, else None:
        Observations in their own order or by phenomenonTime / resultTime."""
        if entity.name != "Observations":
            return None
        if not keys:
            return "key"
        if len(keys) == 1 and isinstance(keys[0].expr, Path) and keys[0].expr.segments in (
                ("phenomenonTime",), ("resultTime",)):
            return "desc" if keys[0].descending else "asc"
        return None

    def keyset(self, entity: EntitySet, alias: sql.Identifier, keys: tuple[OrderKey, ...],
               after: tuple) -> sql.Composable:
        """Entities after (series id, time) in the order of `keys`; index-served."""
        mode = self.keyset_order(entity, keys)
        if mode is None:
            raise QueryError("$skiptoken does not fit this $orderby")
        series, time = after
        s, t = self.column(alias, "_series"), self.column(alias, "_time")
        ps, pt = self.param(series), self.param(time, "timestamptz")
        if mode == "key":
            return sql.SQL("({}, {}) > ({}, {})").format(s, t, ps, pt)
        if mode == "asc":
            return sql.SQL("({1} >= {3} AND ({1} > {3} OR {0} > {2}))").format(s, t, ps, pt)
        return sql.SQL("({1} <= {3} AND ({1} < {3} OR {0} > {2}))").format(s, t, ps, pt)

    def order(self, keys: tuple[OrderKey, ...], entity: EntitySet, alias: sql.Identifier) -> sql.Composable:
        """ORDER BY the requested keys, then the entity's own total order (stable paging)."""
        parts = []
        for key in keys:
            value, kind = self.value(key.expr, entity, alias)
            if kind == "geo":
                raise QueryError("cannot order by a geometry")
            parts.append(sql.SQL("{} {}").format(value, sql.SQL("DESC" if key.descending else "ASC")))
        parts += [self.column(alias, c) for c in entity.order]
        return sql.SQL(", ").join(parts)


# Tree helpers -----------------------------------------------------------------


class _Bound:
    """A path evaluated in an enclosing EXISTS over a to-many link."""

    __slots__ = ("alias", "entity", "segments")

    def __init__(self, segments: tuple[str, ...], entity: EntitySet, alias: sql.Identifier) -> None:
        self.segments, self.entity, self.alias = segments, entity, alias


def _paths(expr) -> list[Path]:
    if isinstance(expr, Path):
        return [expr]
    children = []
    for name in ("left", "right", "operand"):
        if hasattr(expr, name):
            children.append(getattr(expr, name))
    children += list(getattr(expr, "args", ())) + list(getattr(expr, "choices", ()))
    return [p for c in children for p in _paths(c)]


def _first_many(expr, entity: EntitySet) -> str | None:
    for path in _paths(expr):
        link = entity.links.get(path.segments[0])
        if link is not None and link.many and len(path.segments) > 1:
            return path.segments[0]
    return None


def _rebind(expr, link: str):
    """The same leaf with paths through `link` made relative to the link's target."""
    if isinstance(expr, Path):
        return Path(expr.segments[1:]) if expr.segments[0] == link and len(expr.segments) > 1 else _Outer(expr)
    if isinstance(expr, (Compare, Arith, Logical)):
        return type(expr)(expr.op, _rebind(expr.left, link), _rebind(expr.right, link))
    if isinstance(expr, (Negate, Not)):
        return type(expr)(_rebind(expr.operand, link))
    if isinstance(expr, Call):
        return Call(expr.name, tuple(_rebind(a, link) for a in expr.args))
    if isinstance(expr, In):
        return In(_rebind(expr.operand, link), tuple(_rebind(c, link) for c in expr.choices))
    return expr


def _Outer(path: Path):
    # A path of the outer entity inside the EXISTS: not supported together with a collection path.
    raise NotSupported("a comparison between a collection's property and a property of the entity itself "
                       f"({'/'.join(path.segments)}) is not supported")


def _common(a: str, b: str) -> str:
    if a == b:
        return a
    if a == "json":
        return b
    if b == "json":
        return a
    if "text" in (a, b) and "time" in (a, b):
        return "time"
    if {a, b} <= {"num", "bool"}:
        return "num"
    return "text" if "text" in (a, b) else a


def parse_observation_id(key: object) -> tuple[int, datetime] | None:
    """'{series}-{UTC microseconds}' → (series id, time); None when malformed."""
    if not isinstance(key, str):
        return None
    series, _, micros = key.partition("-")
    if not (series.isdigit() and micros.isdigit()) or len(series) > 10 or len(micros) > 18:
        return None
    try:
        return int(series), datetime.fromtimestamp(0, UTC) + timedelta(microseconds=int(micros))
    except OverflowError:
        return None
