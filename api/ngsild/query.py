"""The NGSI-LD query language (`q`, ETSI GS CIM 009 V1.8.1 clause 4.9), parsed
with lark into the filter tree that `storage.ngsild` compiles to SQL.

    Query        := Term (";" Term | "|" Term)*        ";" is and, "|" is or;
                                                       and binds tighter than or
    Term         := "(" Query ")" | Attribute [Op Value]
    Attribute    := attrName ("." attrName)* ("[" attrName "]")*
    Op           := "==" | "!=" | ">=" | ">" | "<=" | "<" | "~=" | "!~="
    Value        := Number | "quoted string" | DateTime | Date | Time | true | false
                  | Value ("," Value)+                 (== and != only: any of)
                  | Value ".." Value                   (== and != only: range)
                  | URI

Attribute names are terms of the request's @context; `resolve` maps each to
the storage name (a model attribute, `dateObserved`, or None for an attribute
no model has).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import lru_cache

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError, VisitError

from api.ngsild.errors import NgsiLdError
from storage.ngsild import And, Comparison, Exists, Filter, Or

__all__ = ["parse_q", "resolve"]

_GRAMMAR = r"""
    ?query: or_expr
    ?or_expr: and_expr ("|" and_expr)*     -> any_of
    ?and_expr: term (";" term)*            -> all_of
    ?term: "(" query ")"
         | attribute OP value              -> compare
         | attribute                       -> exists
    attribute: NAME ("." NAME)* trail
    trail: ("[" NAME "]")*
    ?value: scalar ("," scalar)+           -> value_list
          | scalar ".." scalar             -> value_range
          | scalar
    ?scalar: NUMBER                        -> number
           | STRING                        -> string
           | DATETIME                      -> datetime
           | "true"                        -> true
           | "false"                       -> false
           | URI                           -> uri

    OP: "==" | "!=" | ">=" | "<=" | ">" | "<" | "~=" | "!~="
    NAME: /[A-Za-z_@][A-Za-z0-9_:\/#@-]*/
    NUMBER.2: /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/
    STRING: /"[^"]*"/ | /'[^']*'/
    DATETIME.3: /[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?/
    URI.1: /[a-zA-Z][a-zA-Z0-9+.-]*:[^\s;|(),"']+/
"""

_PARSER = Lark(_GRAMMAR, start="query", parser="lalr")


@v_args(inline=True)
class _Tree(Transformer):
    def attribute(self, *parts) -> tuple[tuple[str, ...], tuple[str, ...]]:
        *names, trail = parts
        return tuple(str(n) for n in names), trail

    def trail(self, *names: Token) -> tuple[str, ...]:
        return tuple(str(n) for n in names)

    def number(self, token: Token) -> float:
        return float(token)

    def string(self, token: Token) -> str:
        return str(token)[1:-1]

    def datetime(self, token: Token) -> datetime | str:
        text = str(token)
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise NgsiLdError("BadRequestData", f"{text!r} is not a valid date-time") from None

    def true(self) -> bool:
        return True

    def false(self) -> bool:
        return False

    def uri(self, token: Token) -> str:
        return str(token)

    def value_list(self, *values):
        return ("list", tuple(values))

    def value_range(self, low, high):
        return ("range", (low, high))

    def compare(self, attribute, op: Token, value):
        (path, trail), op = attribute, str(op)
        if isinstance(value, tuple) and value and value[0] in ("list", "range"):
            kind, items = value
            if op not in ("==", "!="):
                raise NgsiLdError("BadRequestData", f"a value {kind} takes == or !=, not {op}")
            return Comparison(path[0], op, items, path[1:], range=kind == "range", trail=trail)  # type: ignore[arg-type]
        if isinstance(value, datetime) and value.tzinfo is None:
            raise NgsiLdError("BadRequestData", f"the date-time {value.isoformat()} has no time zone")
        return Comparison(path[0], op, value, path[1:], trail=trail)  # type: ignore[arg-type]

    def exists(self, attribute):
        path, trail = attribute
        return Exists(path[0], path[1:], trail)

    def all_of(self, *terms):
        return And(tuple(terms)) if len(terms) > 1 else terms[0]

    def any_of(self, *terms):
        return Or(tuple(terms)) if len(terms) > 1 else terms[0]


@lru_cache(maxsize=1024)
def parse_q(text: str) -> Filter:
    """The tree of a `q` expression; 400 BadRequestData when it is not one."""
    if len(text) > 4096:
        raise NgsiLdError("TooComplexQuery", "the q expression is longer than 4096 characters")
    try:
        return _Tree().transform(_PARSER.parse(text))
    except VisitError as exc:
        if isinstance(exc.orig_exc, NgsiLdError):
            raise exc.orig_exc from None
        raise NgsiLdError("BadRequestData", f"invalid q expression {text!r}: {exc.orig_exc}") from None
    except LarkError as exc:
        message = str(exc).strip().splitlines()[0]
        raise NgsiLdError("BadRequestData", f"invalid q expression {text!r}: {message}") from None


def resolve(node: Filter, name_of: Callable[[str], str | None],
            path_of: Callable[[str], str] | None = None) -> Filter:
    """The tree with each attribute term replaced by `name_of(term)` (and each
    sub-attribute term by `path_of(term)` when given)."""
    if isinstance(node, (And, Or)):
        return type(node)(tuple(resolve(t, name_of, path_of) for t in node.terms))
    fields = {f: getattr(node, f) for f in node.__dataclass_fields__}
    fields["attribute"] = name_of(node.attribute) if node.attribute is not None else None
    if path_of is not None:
        fields["path"] = tuple(path_of(p) for p in node.path)
    return type(node)(**fields)
