"""The SensorThings query options, parsed into the tree of storage.sensorthings.tree.

`$filter` and every `$orderby` key are OData expressions parsed by odata-query's
grammar (a real LALR parser), with the standard's function table (substringof,
the st_* functions, ...) in place of OData's; the result is translated node by
node into our tree. `$expand`, `$select` and `$orderby` lists are split at
top-level commas and semicolons, respecting parentheses and quoted strings.

    QueryOptionError   malformed: HTTP 400
    NotSupported       valid but not implemented here: HTTP 501 (storage.sensorthings)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from odata_query import ast as odata
from odata_query import exceptions as odata_errors
from odata_query.grammar import ODataLexer, ODataParser

from storage.sensorthings import NotSupported, QueryError
from storage.sensorthings.tree import (
    Arith, Call, Compare, Expand, Expr, Geometry, In, Literal, Logical, Negate, Not, OrderKey, Path, Query,
)

__all__ = ["FUNCTIONS", "MAX_TOP", "QueryOptionError", "parse_expression", "parse_options", "skiptoken"]

MAX_TOP = 10_000

# name -> number of arguments (min, max): the standard's built-in query functions.
FUNCTIONS: dict[str, tuple[int, int]] = {
    "substringof": (2, 2), "contains": (2, 2), "endswith": (2, 2), "startswith": (2, 2), "length": (1, 1),
    "indexof": (2, 2), "substring": (2, 3), "tolower": (1, 1), "toupper": (1, 1), "trim": (1, 1),
    "concat": (2, 2),
    "year": (1, 1), "month": (1, 1), "day": (1, 1), "hour": (1, 1), "minute": (1, 1), "second": (1, 1),
    "fractionalseconds": (1, 1), "date": (1, 1), "time": (1, 1), "totaloffsetminutes": (1, 1),
    "now": (0, 0), "mindatetime": (0, 0), "maxdatetime": (0, 0),
    "round": (1, 1), "floor": (1, 1), "ceiling": (1, 1),
    "geo.distance": (2, 2), "geo.length": (1, 1), "geo.intersects": (2, 2),
    "st_equals": (2, 2), "st_disjoint": (2, 2), "st_touches": (2, 2), "st_within": (2, 2),
    "st_overlaps": (2, 2), "st_crosses": (2, 2), "st_intersects": (2, 2), "st_contains": (2, 2),
    "st_relate": (3, 3),
}
_OPTIONS = {"$filter", "$expand", "$select", "$orderby", "$top", "$skip", "$count", "$resultFormat", "$skiptoken"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class QueryOptionError(QueryError):
    """A query option that does not parse."""


def _function_call(func: odata.Identifier, args):
    """The standard's function table in place of odata-query's OData one."""
    name = func.full_name()
    if name not in FUNCTIONS:
        raise odata_errors.UnknownFunctionException(name)
    low, high = FUNCTIONS[name]
    if not low <= len(args) <= high:
        raise odata_errors.ArgumentCountException(name, low, high, len(args))
    return odata.Call(func, args)


def _parser() -> ODataParser:
    parser = ODataParser()
    parser._function_call = _function_call  # the grammar calls self._function_call for every call
    return parser


_GEOMETRY_PREFIX = re.compile(r"\bgeometry$", re.IGNORECASE)   # before a quoted WKT: geometry'POINT (1 2)'
_IOT_ID = re.compile(r"(?<![\w.])@iot\.id\b")   # `@iot.id` names the id property, as `id` does


def _outside_quotes(text: str, change) -> str:
    """Apply `change` to the parts of an expression outside string literals ('...', '' escapes)."""
    parts = re.split(r"('(?:[^']|'')*')", text)
    return "".join(p if i % 2 else change(p) for i, p in enumerate(parts))


def parse_expression(text: str, *, option: str = "$filter") -> Expr:
    """Parse one OData expression into our tree; QueryOptionError / NotSupported."""
    source = _outside_quotes(text, lambda part: _IOT_ID.sub("id", _GEOMETRY_PREFIX.sub("geography", part)))
    try:
        node = _parser().parse(ODataLexer().tokenize(source))
    except odata_errors.UnknownFunctionException as exc:
        raise QueryOptionError(f"{option}: {exc}") from None
    except odata_errors.ODataException as exc:
        raise QueryOptionError(f"{option} {text!r} does not parse: {exc}") from None
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise QueryOptionError(f"{option} {text!r} does not parse: {exc}") from None
    if node is None:
        raise QueryOptionError(f"{option} is empty")
    return _convert(node, option)


def _convert(node, option: str) -> Expr:
    if isinstance(node, odata.Identifier):
        return Path((*node.namespace, node.name) if node.namespace else (node.name,))
    if isinstance(node, odata.Attribute):
        owner = _convert(node.owner, option)
        if not isinstance(owner, Path):
            raise QueryOptionError(f"{option}: only a property path may have /{node.attr}")
        return Path((*owner.segments, node.attr))
    if isinstance(node, odata.Null):
        return Literal(None, "null")
    if isinstance(node, odata.Boolean):
        return Literal(node.py_val, "bool")
    if isinstance(node, (odata.Integer, odata.Float)):
        return Literal(node.py_val, "num")
    if isinstance(node, odata.String):
        return Literal(node.py_val, "text")
    if isinstance(node, odata.DateTime):
        try:
            value = node.py_val
        except ValueError as exc:
            raise QueryOptionError(f"{option}: {node.val!r} is not a date and time: {exc}") from None
        if value.tzinfo is None:
            raise QueryOptionError(f"{option}: {node.val!r} needs a time zone (Z or ±hh:mm)")
        return Literal(value, "time")
    if isinstance(node, odata.Date):
        return Literal(node.py_val, "date")
    if isinstance(node, odata.Time):
        return Literal(node.py_val, "clock")
    if isinstance(node, odata.Duration):
        return Literal(node.py_val, "duration")
    if isinstance(node, odata.Geography):
        return parse_wkt(node.val, option)
    if isinstance(node, odata.List):
        raise QueryOptionError(f"{option}: a list is only allowed after 'in'")
    if isinstance(node, odata.Compare):
        if isinstance(node.comparator, odata.In):
            if not isinstance(node.right, odata.List):
                raise QueryOptionError(f"{option}: 'in' takes a parenthesised list")
            return In(_convert(node.left, option), tuple(_convert(v, option) for v in node.right.val))
        op = type(node.comparator).__name__.lower().replace("lte", "le").replace("gte", "ge").replace("noteq", "ne")
        return Compare(op, _convert(node.left, option), _convert(node.right, option))
    if isinstance(node, odata.BoolOp):
        return Logical("and" if isinstance(node.op, odata.And) else "or", _convert(node.left, option),
                       _convert(node.right, option))
    if isinstance(node, odata.UnaryOp):
        operand = _convert(node.operand, option)
        return Not(operand) if isinstance(node.op, odata.Not) else Negate(operand)
    if isinstance(node, odata.BinOp):
        op = {"mult": "mul"}.get(type(node.op).__name__.lower(), type(node.op).__name__.lower())
        return Arith(op, _convert(node.left, option), _convert(node.right, option))
    if isinstance(node, odata.Call):
        return Call(node.func.full_name(), tuple(_convert(a, option) for a in node.args))
    if isinstance(node, odata.CollectionLambda):
        raise NotSupported(f"{option}: the lambda operators any() and all() are not supported")
    raise NotSupported(f"{option}: {type(node).__name__} expressions are not supported")


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_WKT = re.compile(r"^\s*(?:SRID=\d+;)?\s*(POINT|LINESTRING|POLYGON)\s*\((.*)\)\s*$", re.IGNORECASE | re.DOTALL)


def parse_wkt(text: str, option: str = "$filter") -> Geometry:
    """A WKT POINT, LINESTRING or POLYGON (outer ring only) into a Geometry."""
    match = _WKT.match(text)
    if not match:
        raise NotSupported(f"{option}: geometry {text!r}: only POINT, LINESTRING and POLYGON are supported")
    kind = {"POINT": "Point", "LINESTRING": "LineString", "POLYGON": "Polygon"}[match[1].upper()]
    body = match[2].strip()
    if kind == "Polygon":
        rings = re.findall(r"\(([^()]*)\)", body)
        if not rings:
            raise QueryOptionError(f"{option}: polygon {text!r} has no ring")
        if len(rings) > 1:
            raise NotSupported(f"{option}: polygons with holes are not supported")
        body = rings[0]
    coords = []
    for pair in body.split(","):
        parts = pair.split()
        if len(parts) not in (2, 3) or not all(re.fullmatch(_NUM, p) for p in parts):
            raise QueryOptionError(f"{option}: {pair.strip()!r} in {text!r} is not a coordinate pair")
        coords.append((float(parts[0]), float(parts[1])))
    if kind == "Point" and len(coords) != 1 or kind == "LineString" and len(coords) < 2:
        raise QueryOptionError(f"{option}: {text!r} has the wrong number of points")
    if kind == "Polygon":
        if len(coords) < 4 or coords[0] != coords[-1]:
            raise QueryOptionError(f"{option}: the ring of {text!r} must be closed and have at least 4 points")
        coords = coords[:-1]
    return Geometry(kind, tuple(coords))


# Lists ---------------------------------------------------------------------------


def split_top(text: str, separators: str) -> list[str]:
    """Split at separators outside parentheses and quoted strings."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth < 0:
                raise QueryOptionError(f"unbalanced parentheses in {text!r}")
        elif not quoted and depth == 0 and ch in separators:
            parts.append(text[start:i])
            start = i + 1
    if depth or quoted:
        raise QueryOptionError(f"unbalanced parentheses or quotes in {text!r}")
    parts.append(text[start:])
    return parts


_ORDER = re.compile(r"^(.*?)(?:\s+(asc|desc))?\s*$", re.IGNORECASE | re.DOTALL)
_NAME = re.compile(r"^@?[A-Za-z_][A-Za-z0-9_.]*$")


def _orderby(text: str) -> tuple[OrderKey, ...]:
    keys = []
    for item in split_top(text, ","):
        match = _ORDER.match(item.strip())
        expr = match[1].strip() if match else ""
        if not expr:
            raise QueryOptionError(f"$orderby {text!r} has an empty key")
        keys.append(OrderKey(parse_expression(expr, option="$orderby"), (match[2] or "").lower() == "desc"))
    return tuple(keys)


def _select(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in split_top(text, ","))
    for name in names:
        if not _NAME.match(name) and "/" not in name:
            raise QueryOptionError(f"$select {text!r}: {name!r} is not a property name")
        if "/" in name:
            raise NotSupported(f"$select {name!r}: selecting properties of complex properties is not supported")
    return names


def _integer(name: str, text: str, *, high: int | None = None) -> int:
    if not re.fullmatch(r"\d{1,12}", text.strip()):
        raise QueryOptionError(f"{name} must be a non-negative integer, not {text!r}")
    value = int(text)
    if high is not None and value > high:
        return high
    return value


def _expand(text: str) -> tuple[Expand, ...]:
    items: list[Expand] = []
    for item in split_top(text, ","):
        item = item.strip()
        if not item:
            raise QueryOptionError(f"$expand {text!r} has an empty item")
        path, options = item, {}
        if "(" in item:
            if not item.endswith(")"):
                raise QueryOptionError(f"$expand item {item!r}: options go in parentheses at its end")
            path, inner = item[: item.index("(")], item[item.index("(") + 1 : -1]
            for option in split_top(inner, ";"):
                name, eq, value = option.strip().partition("=")
                if not eq:
                    raise QueryOptionError(f"$expand item {item!r}: {option!r} is not name=value")
                options[name.strip()] = value.strip()
        segments = path.strip().split("/")
        if not all(_NAME.match(s) for s in segments):
            raise QueryOptionError(f"$expand {item!r}: {path!r} is not a navigation path")
        query = parse_options(options, nested=True)
        for segment in reversed(segments[1:]):
            query = Query(expand=(Expand(segment, query),))
        _merge(items, Expand(segments[0], query))
    return tuple(items)


def _merge(items: list[Expand], new: Expand) -> None:
    """`Datastreams,Datastreams/Observations` expand Datastreams once, with Observations inside."""
    for i, old in enumerate(items):
        if old.link == new.link:
            q = old.query
            items[i] = Expand(old.link, Query(q.filter or new.query.filter, q.orderby or new.query.orderby,
                                              q.top if q.top is not None else new.query.top,
                                              q.skip or new.query.skip, q.count or new.query.count,
                                              q.select or new.query.select,
                                              (*q.expand, *new.query.expand)))
            return
    items.append(new)


def parse_options(params: Mapping[str, str], *, nested: bool = False) -> Query:
    """The `$` options of a request (or of one `$expand` item) as a Query."""
    unknown = [k for k in params if k.startswith("$") and k not in _OPTIONS]
    if unknown:
        raise NotSupported(f"the query option {unknown[0]} is not supported "
                           f"(supported: {', '.join(sorted(_OPTIONS))})")
    count = params.get("$count")
    if count is not None and count.strip().lower() not in ("true", "false"):
        raise QueryOptionError(f"$count must be true or false, not {count!r}")
    result_format = params.get("$resultFormat")
    if result_format is not None and result_format != "dataArray":
        raise NotSupported(f"$resultFormat={result_format!r} is not supported (only dataArray)")
    extra = {"$resultFormat": result_format} if result_format else {}
    after = _skiptoken(params["$skiptoken"]) if "$skiptoken" in params and not nested else None
    return Query(
        filter=parse_expression(params["$filter"]) if "$filter" in params else None,
        orderby=_orderby(params["$orderby"]) if "$orderby" in params else (),
        top=_integer("$top", params["$top"], high=MAX_TOP) if "$top" in params else None,
        skip=_integer("$skip", params["$skip"]) if "$skip" in params else 0,
        count=count is not None and count.strip().lower() == "true",
        select=_select(params["$select"]) if "$select" in params else (),
        expand=_expand(params["$expand"]) if "$expand" in params else (),
        extra=extra,
        after=after,
    )


def skiptoken(series: int, time_us: int) -> str:
    """The $skiptoken of a nextLink: where the next page of Observations starts."""
    return f"{series}.{time_us}"


def _skiptoken(text: str) -> tuple[int, datetime]:
    match = re.fullmatch(r"(\d{1,10})\.(-?\d{1,18})", text.strip())
    if not match:
        raise QueryOptionError("$skiptoken is not one this server gave out (follow @iot.nextLink as it is)")
    try:
        return int(match[1]), _EPOCH + timedelta(microseconds=int(match[2]))
    except OverflowError:
        raise QueryOptionError("$skiptoken is out of range") from None
