"""Alert rules (migrations 0010, 0015): what an organisation watches, and on which series or
devices.

Four kinds: ``threshold`` (above or below ``on_value`` for ``hold_s`` seconds, cleared back
beyond ``off_value``), ``anomaly`` (a flag of the given kinds scoring at least ``min_score``;
cleared after ``clear_s`` seconds without one), ``silence`` (no reading for ``intervals``
expected intervals) and ``device`` (a gateway ``offline`` for ``hold_s`` seconds, or its
``buffer`` of packs not yet committed growing beyond ``on_value`` over ``hold_s`` seconds,
cleared at ``off_value``).

A rule's scope is one series, a device, a quantity, a data product or an intersection of them;
no scope is every series (gateway) the organisation may read. Whatever the scope says, a rule
sees only what its organisation may read *now* (``storage.products.READABLE_SERIES``): scopes it
cannot read are refused when the rule is made (``ScopeNotFound``), and a grant that ends takes
its series out of the rule at ingest's next reload (``rule_series``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row

from storage.errors import StorageError, map_errors
from storage.products import READABLE_SERIES

__all__ = [
    "CONDITIONS", "RULE_KINDS", "SEVERITIES", "AlertRule", "RuleScope", "ScopeNotFound", "SeriesNotFound",
    "create_rule", "list_rules", "rule_devices", "rule_series",
]

RULE_KINDS = ("threshold", "anomaly", "silence", "device")
CONDITIONS = ("offline", "buffer")
SEVERITIES = ("info", "warning", "critical")


class ScopeNotFound(StorageError):
    """The organisation may not read the series, device or product a rule names (or it does not exist)."""


class SeriesNotFound(ScopeNotFound):
    """The organisation may read no series of that id (it may be another organisation's)."""


@dataclass(frozen=True, slots=True)
class RuleScope:
    """What a rule watches: the intersection of the given parts; all None: everything readable."""

    series_id: int | None = None
    device_org: str | None = None
    device: str | None = None
    quantity: str | None = None
    product_id: int | None = None


@dataclass(frozen=True, slots=True)
class AlertRule:
    id: int
    org: str
    name: str
    kind: str
    series_id: int | None
    device_org: str | None
    device: str | None
    quantity: str | None
    product_id: int | None
    above: bool
    on_value: float | None
    off_value: float | None
    hold_s: float
    anomaly_kinds: list[str] | None
    min_score: float | None
    clear_s: float | None
    intervals: float | None
    condition: str | None
    severity: str
    enabled: bool


_COLUMNS = ("id, org, name, kind, series_id, device_org, device, quantity, product_id, above, on_value, off_value,"
            " hold_s, anomaly_kinds, min_score, clear_s, intervals, condition, severity, enabled")
_ORG_ID = "(SELECT id FROM organisations WHERE slug = %(org_slug)s)"

# The scope a rule may have: each part is something `org_slug` may read.
_READABLE_SCOPE = f"""
    SELECT (%(series_id)s::int IS NULL OR %(series_id)s IN ({READABLE_SERIES})) AS series_ok,
           (%(device)s::text IS NULL OR EXISTS (SELECT 1 FROM devices d WHERE d.org = %(device_org)s
                AND d.device = %(device)s AND (d.org = %(org_slug)s OR EXISTS (SELECT 1 FROM series s
                WHERE s.org = d.org AND s.device = d.device AND s.id IN ({READABLE_SERIES}))))) AS device_ok,
           (%(product_id)s::bigint IS NULL OR EXISTS (SELECT 1 FROM data_products p WHERE p.id = %(product_id)s
                AND (p.org_id = %(org_id)s OR p.open OR EXISTS (SELECT 1 FROM access_grants g
                WHERE g.product_id = p.id AND g.consumer_org = %(org_id)s AND g.status = 'active'
                AND (g.expires_at IS NULL OR g.expires_at > now()))))) AS product_ok
"""


def _check_scope(cur: psycopg.Cursor, org: str, name: str, scope: RuleScope) -> None:
    params = {"org_slug": org, "series_id": scope.series_id, "device_org": scope.device_org or org,
              "device": scope.device, "product_id": scope.product_id}
    org_id = cur.execute(f"SELECT {_ORG_ID}", params).fetchone()[0]
    series_ok, device_ok, product_ok = cur.execute(_READABLE_SCOPE, {**params, "org_id": org_id}).fetchone()
    if not series_ok:
        raise SeriesNotFound(f"rule {name!r}: series {scope.series_id} not found in organisation {org!r}")
    if not device_ok:
        raise ScopeNotFound(f"rule {name!r}: organisation {org!r} may read no device {scope.device!r}")
    if not product_ok:
        raise ScopeNotFound(f"rule {name!r}: organisation {org!r} may read no product {scope.product_id}")


def _finite(name: str, **values: float | None) -> None:
    for key, x in values.items():
        if x is not None and not (isinstance(x, (int, float)) and math.isfinite(x)):
            raise StorageError(f"rule {name!r}: {key} must be a finite number")


def create_rule(
    conn: psycopg.Connection, *, org: str, name: str, kind: str = "threshold", series_id: int | None = None,
    scope: RuleScope | None = None, on: float | None = None, off: float | None = None, hold_s: float = 0.0,
    above: bool = True, severity: str = "warning", anomaly_kinds: list[str] | None = None,
    min_score: float | None = None, clear_s: float | None = None, intervals: float | None = None,
    condition: str | None = None,
) -> AlertRule:
    """A rule of `org`; `series_id` is short for ``scope=RuleScope(series_id=...)``. A scope part
    `org` may not read is refused (``ScopeNotFound``, ``SeriesNotFound`` for a series)."""
    scope = scope or RuleScope(series_id=series_id)
    if scope.device is not None and scope.device_org is None:
        scope = RuleScope(scope.series_id, org, scope.device, scope.quantity, scope.product_id)
    if kind not in RULE_KINDS:
        raise StorageError(f"rule {name!r}: kind must be one of {', '.join(RULE_KINDS)}")
    if severity not in SEVERITIES:
        raise StorageError(f"rule {name!r}: severity must be one of {', '.join(SEVERITIES)}")
    if kind == "threshold" or (kind == "device" and condition == "buffer"):
        if on is None:
            raise StorageError(f"rule {name!r}: a {kind} rule needs `on`")
        off = on if off is None else off
    _finite(name, on=on, off=off, hold_s=hold_s, min_score=min_score, clear_s=clear_s, intervals=intervals)
    with map_errors(f"create rule {org}/{name}"):
        with conn.cursor() as cur:
            _check_scope(cur, org, name, scope)
        return conn.cursor(row_factory=class_row(AlertRule)).execute(
            f"INSERT INTO alert_rules (org, name, kind, series_id, device_org, device, quantity, product_id, above,"
            f" on_value, off_value, hold_s, anomaly_kinds, min_score, clear_s, intervals, condition, severity)"
            f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (org, name, kind, scope.series_id, scope.device_org, scope.device, scope.quantity, scope.product_id,
             above, None if on is None else float(on), None if off is None else float(off), float(hold_s),
             anomaly_kinds, min_score, clear_s, intervals, condition, severity),
        ).fetchone()


def list_rules(conn: psycopg.Connection, *, org: str | None = None, enabled: bool = True) -> list[AlertRule]:
    """Rules of `org` (every organisation's for None, as ingest loads them), by id."""
    with map_errors("list rules"), conn.cursor(row_factory=class_row(AlertRule)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM alert_rules WHERE (%(org)s::text IS NULL OR org = %(org)s)"
            f" AND (NOT %(enabled)s OR enabled) ORDER BY id",
            {"org": org, "enabled": enabled},
        ).fetchall()


_SCOPE_MATCH = """
    (r.series_id IS NULL OR s.id = r.series_id)
    AND (r.device IS NULL OR (s.org = r.device_org AND s.device = r.device))
    AND (r.quantity IS NULL OR s.quantity = r.quantity)
    AND (r.product_id IS NULL OR s.id IN (SELECT series_id FROM data_product_series WHERE product_id = r.product_id))
"""


def _rule_orgs(conn: psycopg.Connection, *, device: bool) -> list[dict[str, object]]:
    """The query parameters (org_slug, org_id) of every organisation with enabled device rules
    (`device`) or enabled series rules, in one statement."""
    kind = "r.kind = 'device'" if device else "r.kind <> 'device'"
    return [{"org_slug": slug, "org_id": org_id} for slug, org_id in conn.execute(
        f"SELECT DISTINCT r.org, o.id FROM alert_rules r LEFT JOIN organisations o ON o.slug = r.org"
        f" WHERE r.enabled AND {kind} ORDER BY r.org").fetchall()]


def rule_series(conn: psycopg.Connection) -> list[tuple[int, int]]:
    """(rule id, series id) of every enabled series rule and each series it watches now: its
    scope, intersected with what its organisation may read."""
    out: list[tuple[int, int]] = []
    with map_errors("expand rule scopes"):
        for params in _rule_orgs(conn, device=False):
            out += conn.execute(
                f"SELECT r.id, s.id FROM alert_rules r JOIN series s ON {_SCOPE_MATCH}"
                f" WHERE r.org = %(org_slug)s AND r.enabled AND r.kind <> 'device'"
                f" AND s.id IN ({READABLE_SERIES}) ORDER BY r.id, s.id", params,
            ).fetchall()
    return out


@dataclass(frozen=True, slots=True)
class DeviceState:
    """A gateway a device rule watches, with its newest status (None: it never reported)."""

    rule_id: int
    device_org: str
    device: str
    state: str | None
    buffer_depth: int | None
    received_at: datetime | None


def rule_devices(conn: psycopg.Connection) -> list[DeviceState]:
    """Every (device rule, gateway) pair: the gateways in the rule's scope its organisation may
    see (its own, and those carrying series it may read), with their newest status."""
    out: list[DeviceState] = []
    with map_errors("expand device rules"):
        for params in _rule_orgs(conn, device=True):
            rows = conn.execute(
                f"SELECT r.id, d.org, d.device, g.state, g.buffer_depth, g.received_at FROM alert_rules r"
                f" JOIN devices d ON d.kind = 'gateway' AND (r.device IS NULL OR (d.org = r.device_org"
                f" AND d.device = r.device))"
                f" LEFT JOIN gateway_status g ON g.org = d.org AND g.device = d.device"
                f" WHERE r.org = %(org_slug)s AND r.enabled AND r.kind = 'device'"
                f" AND (d.org = %(org_slug)s OR EXISTS (SELECT 1 FROM series s WHERE s.org = d.org"
                f" AND s.device IN (SELECT x.device FROM devices x WHERE x.org = d.org"
                f" AND (x.device = d.device OR x.gateway = d.device)) AND s.id IN ({READABLE_SERIES})))"
                f" ORDER BY r.id, d.org, d.device", params,
            ).fetchall()
            out += [DeviceState(*row) for row in rows]
    return out
