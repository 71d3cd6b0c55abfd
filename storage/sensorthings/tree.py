"""The small expression tree of SensorThings queries, shared by the face that
parses `$filter` / `$orderby` / `$expand` (api.sensorthings) and the compiler
that turns it into parameterised SQL (storage.sensorthings.compile).

    Path(("Datastream", "Thing", "name"))        a property, through navigation
    Literal(value, "num" | "text" | "bool" | "time" | "date" | "clock" | "duration" | "null")
    Geometry("Point" | "LineString" | "Polygon", ((x, y), ...))
    Call("substringof", (arg, ...)),  Arith("add", l, r),  Negate(e)
    Compare("eq", l, r),  In(e, (l, ...)),  Logical("and", l, r),  Not(e)

A `Query` holds the options of one entity set; an `Expand` names a navigation
property and the options that apply inside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Arith", "Call", "Compare", "Expand", "Expr", "Geometry", "In", "Literal", "Logical", "Negate", "Not",
    "OrderKey", "Path", "Query",
]


@dataclass(frozen=True, slots=True)
class Path:
    segments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any
    type: str


@dataclass(frozen=True, slots=True)
class Geometry:
    kind: str
    coords: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Arith:
    op: str          # add | sub | mul | div | mod
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Negate:
    operand: Expr


@dataclass(frozen=True, slots=True)
class Compare:
    op: str          # eq | ne | lt | le | gt | ge
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class In:
    operand: Expr
    choices: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Logical:
    op: str          # and | or
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


Expr = Path | Literal | Geometry | Call | Arith | Negate | Compare | In | Logical | Not


@dataclass(frozen=True, slots=True)
class OrderKey:
    expr: Expr
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Expand:
    link: str                        # a navigation property of the parent
    query: Query


@dataclass(frozen=True, slots=True)
class Query:
    filter: Expr | None = None
    orderby: tuple[OrderKey, ...] = ()
    top: int | None = None
    skip: int = 0
    count: bool = False
    select: tuple[str, ...] = ()     # property and navigation names; empty: all
    expand: tuple[Expand, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)
    after: tuple | None = None       # keyset of the last entity served ($skiptoken), see Builder.keyset
