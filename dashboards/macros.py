"""Grafana's PostgreSQL macros, expanded as Grafana expands them, to run a panel's
SQL outside Grafana (the tests do, against a real database).

Supported: `$__timeFilter(col)`, `$__timeFrom()`, `$__timeTo()`,
`$__timeGroupAlias(col, interval)`, `$__timeGroup(col, interval)`, `$__interval`,
`$__interval_ms`. With `timescaledb=True` the group macros become `time_bucket`,
as Grafana writes them for a data source with TimescaleDB enabled.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

__all__ = ["MacroError", "expand_macros", "interval_seconds"]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TOKEN = re.compile(r"\$__(\w+)(?:\(([^()]*)\))?")


class MacroError(ValueError):
    """A macro this expander does not know, or a malformed argument."""


def interval_seconds(text: str) -> float:
    match = re.fullmatch(r"'?\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*'?", text.strip())
    if not match:
        raise MacroError(f"not an interval: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def _quote(at: datetime) -> str:
    return "'" + at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "'"


def expand_macros(sql: str, *, start: datetime, end: datetime, interval: str = "1m",
                  timescaledb: bool = False) -> str:
    """`sql` with every `$__macro` replaced for the time range [start, end]."""
    step = interval_seconds(interval)

    def group(args: str, alias: bool) -> str:
        column, _, width = (part.strip() for part in args.partition(","))
        seconds = interval_seconds(width.replace("$__interval", interval)) if width else step
        if timescaledb:
            expr = f"time_bucket('{seconds:g}s', {column})"
        else:
            expr = f"floor(extract(epoch from {column})/{seconds:g})*{seconds:g}"
        return f'{expr} AS "time"' if alias else expr

    def replace(match: re.Match[str]) -> str:
        name, args = match[1], match[2]
        if name == "timeFilter":
            return f"{args.strip()} BETWEEN {_quote(start)} AND {_quote(end)}"
        if name == "timeFrom":
            return _quote(start)
        if name == "timeTo":
            return _quote(end)
        if name == "timeGroupAlias":
            return group(args or "", alias=True)
        if name == "timeGroup":
            return group(args or "", alias=False)
        if name == "interval_ms" and args is None:
            return str(int(step * 1000))
        if name == "interval" and args is None:
            return interval
        raise MacroError(f"unknown macro $__{name}")

    return _TOKEN.sub(replace, sql)
