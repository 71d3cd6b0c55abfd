"""/v1/alarms: your organisation's alert rules and the alarms their episodes opened.

A rule watches what your organisation may read — one series, a device, a quantity, a data
product, or their intersection — for a threshold (above or below `on` for `hold_s` seconds,
cleared back beyond `off`), anomaly flags of some kinds with a minimum score, silence (no
reading for `intervals` expected intervals) or a gateway's status (offline, buffer growing).
Ingest evaluates it on every batch and on a timer (ingest/rules.py) and opens one alarm per
series (or device) and episode, which you acknowledge with a comment and which clears when the
condition ends. Alarms are listed, filtered and exported (JSON, CSV, Parquet).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ConnDep, PrincipalDep, actor
from api.errors import Problem
from api.params import Instant
from api.routes import problem_responses
from api.tabular import Format, table_response
from protocol.quantities import QUANTITIES
from storage import alarms as store
from storage.audit import record_change
from storage.errors import StorageError

router = APIRouter(prefix="/alarms", tags=["alarms"])

State = Literal["open", "acknowledged", "cleared"]
Kind = Literal["threshold", "anomaly", "silence", "device"]
Severity = Literal["info", "warning", "critical"]
AnomalyKind = Literal["spike", "level_shift", "stuck", "out_of_range", "gap", "pattern"]


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    kind: Kind = "threshold"
    series_id: int | None = Field(None, ge=1, le=2**31 - 1, description="Scope: this series.")
    device: str | None = Field(None, min_length=1, max_length=200, description="Scope: this device's series "
                               "(a device rule: this gateway).")
    device_org: str | None = Field(None, min_length=1, max_length=63,
                                   description="The device's organisation; default yours.")
    quantity: str | None = Field(None, min_length=1, max_length=64, description="Scope: series of this quantity.")
    product_id: int | None = Field(None, ge=1, le=2**62, description="Scope: the series of this data product.")
    on: float | None = Field(None, allow_inf_nan=False, description="Threshold: the limit beyond which an episode "
                             "opens; device `buffer`: packs held by the edge.")
    off: float | None = Field(None, allow_inf_nan=False,
                              description="Back beyond it the episode clears (hysteresis); default `on`.")
    hold_s: float = Field(0.0, ge=0, lt=3_162_240_000, description="Seconds the condition lasts before it opens.")
    above: bool = True
    anomaly_kinds: list[AnomalyKind] | None = Field(None, min_length=1, description="Anomaly: these kinds; "
                                                    "default every kind.")
    min_score: float = Field(0.5, ge=0, le=1, description="Anomaly: the lowest score that counts.")
    clear_s: float = Field(900.0, gt=0, lt=3_162_240_000, description="Anomaly: seconds without a flag that clear.")
    intervals: float | None = Field(None, gt=1, lt=1e6, description="Silence: expected intervals without a reading.")
    condition: Literal["offline", "buffer"] | None = Field(None, description="Device: what to watch.")
    severity: Severity = "warning"


class RulePublic(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    id: int
    name: str
    kind: Kind
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


class AlarmPublic(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    id: int
    rule_id: int
    rule: str
    kind: Kind
    severity: Severity
    series_id: int | None
    device_org: str | None
    device: str | None
    quantity: str | None
    state: State
    opened_at: datetime
    open_value: float | None
    last_at: datetime | None = Field(description="The newest reading (or flag) that kept the condition up.")
    hits: int = Field(description="Readings (flags) counted into the episode.")
    detail: dict[str, Any] = Field(description="What the kind adds: anomaly kind and score, overdue time, "
                                   "gateway state or buffer depth.")
    cleared_at: datetime | None
    clear_value: float | None
    acked_at: datetime | None
    acked_by: str | None
    ack_comment: str | None


class Ack(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field(min_length=1, max_length=2000)


def _refusal(body: RuleCreate) -> str | None:
    """Why the rule cannot be made as given (its kind's fields), or None."""
    series_scope = body.series_id is not None or body.quantity is not None or body.product_id is not None
    if body.quantity is not None and body.quantity not in QUANTITIES:
        return f"unknown quantity {body.quantity!r}"
    if body.kind == "threshold" or (body.kind == "device" and body.condition == "buffer"):
        if body.on is None:
            return f"a {body.kind} rule needs `on`"
        off, above = body.on if body.off is None else body.off, body.above or body.kind == "device"
        if (above and off > body.on) or (not above and off < body.on):
            return f"off must be {'<=' if above else '>='} on for {'an above' if above else 'a below'} rule"
    if body.kind == "threshold" and body.series_id is None and body.quantity is None:
        return "a threshold rule needs a series_id or a quantity in its scope (limits are in a quantity's unit)"
    if body.kind == "silence" and body.intervals is None:
        return "a silence rule needs `intervals`"
    if body.kind == "device" and (body.condition is None or series_scope):
        return "a device rule needs a `condition` and is scoped to a gateway (`device`) or to all of them"
    return None


@router.post("/rules", response_model=RulePublic, status_code=201, summary="Create an alert rule",
             description="A rule on what your organisation may read. Threshold, e.g. PM2.5 above 25 for 15 minutes, "
             "cleared below 20: `on` 25, `off` 20, `hold_s` 900, `quantity` pm2_5. Anomaly: `anomaly_kinds`, "
             "`min_score`, `clear_s`. Silence: `intervals`. Device: `condition` offline (`hold_s`) or buffer "
             "(`on`, `off` packs, growing over `hold_s`). A scope you may not read is not found (404).",
             responses=problem_responses(401, 404, 409, 422, 503))
def create_rule(conn: ConnDep, principal: PrincipalDep, body: RuleCreate) -> RulePublic:
    if (reason := _refusal(body)) is not None:
        raise Problem(422, reason)
    scope = store.RuleScope(body.series_id, body.device_org if body.device else None, body.device, body.quantity,
                            body.product_id)
    kind = body.kind
    try:
        rule = store.create_rule(
            conn, org=principal.org_slug, name=body.name, kind=kind, scope=scope, on=body.on, off=body.off,
            hold_s=body.hold_s, above=body.above or kind != "threshold", severity=body.severity,
            anomaly_kinds=body.anomaly_kinds if kind == "anomaly" else None,
            min_score=body.min_score if kind == "anomaly" else None,
            clear_s=body.clear_s if kind == "anomaly" else None, intervals=body.intervals if kind == "silence" else None,
            condition=body.condition if kind == "device" else None)
    except store.SeriesNotFound as exc:
        raise Problem(404, f"your organisation may read no series {body.series_id}") from exc
    except store.ScopeNotFound as exc:
        raise Problem(404, str(exc)) from exc
    except StorageError as exc:
        if exc.sqlstate == "23505":  # unique (org, name)
            raise Problem(409, f"your organisation already has a rule named {body.name!r}") from exc
        raise
    record_change(conn, actor=actor(principal), action="alarm_rule.create", org_id=principal.org_id,
                  key_id=principal.key_id, owner_org=principal.org_id, detail={"rule_id": rule.id})
    return RulePublic.model_validate(rule)


@router.get("/rules", response_model=list[RulePublic], summary="Your alert rules",
            responses=problem_responses(401, 503))
def read_rules(conn: ConnDep, principal: PrincipalDep) -> list[RulePublic]:
    return [RulePublic.model_validate(r) for r in store.list_rules(conn, org=principal.org_slug)]


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["webhook", "smtp", "mqtt"]
    target: str | None = Field(None, min_length=3, max_length=2000,
                               description="Webhook URL (http or https), or the recipient; mqtt: always lab/{org}/alarms.")
    secret: str | None = Field(None, min_length=16, max_length=200, description="Webhook: the HMAC-SHA256 key.")
    smtp_host: str | None = Field(None, min_length=1, max_length=253)
    smtp_port: int | None = Field(None, ge=1, le=65535)


class ChannelPublic(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    id: int
    kind: str
    target: str
    smtp_host: str | None
    smtp_port: int | None
    enabled: bool


@router.post("/channels", response_model=ChannelPublic, status_code=201, summary="Add a notification channel",
             description="Where your alarms are sent when they open, are acknowledged and clear: a webhook "
             "(JSON, signed: `X-Citylab-Signature: sha256=HMAC(secret, timestamp + '.' + body)`) or an e-mail "
             "address with the SMTP server to hand it to. Private and loopback addresses are refused when "
             "the notification is sent, unless the deployment allows them.",
             responses=problem_responses(401, 403, 422, 503))
def create_channel(conn: ConnDep, principal: PrincipalDep, body: ChannelCreate) -> ChannelPublic:
    if principal.role != "admin":
        raise Problem(403, "notification channels need an admin key")
    target = body.target or ""
    if body.kind == "mqtt":
        target = f"lab/{principal.org_slug}/alarms"  # the organisation's own topic, never another's
    elif body.kind == "webhook":
        url = urlsplit(target)
        if url.scheme not in ("http", "https") or not url.hostname or body.secret is None:
            raise Problem(422, "a webhook needs an http(s) URL with a host and a secret of at least 16 characters")
    elif body.smtp_host is None or body.smtp_port is None or "@" not in target:
        raise Problem(422, "an e-mail channel needs a recipient address, smtp_host and smtp_port")
    channel = store.create_channel(conn, org=principal.org_slug, kind=body.kind, target=target,
                                   secret=body.secret, smtp_host=body.smtp_host, smtp_port=body.smtp_port)
    record_change(conn, actor=actor(principal), action="alarm_channel.create", org_id=principal.org_id,
                  key_id=principal.key_id, owner_org=principal.org_id, detail={"channel_id": channel.id})
    return ChannelPublic.model_validate(channel)


@router.get("/channels", response_model=list[ChannelPublic], summary="Your notification channels",
            responses=problem_responses(401, 503))
def read_channels(conn: ConnDep, principal: PrincipalDep) -> list[ChannelPublic]:
    return [ChannelPublic.model_validate(c) for c in store.list_channels(conn, org=principal.org_slug)]


_EXPORT_COLUMNS = ("id", "rule_id", "rule", "kind", "severity", "series_id", "device_org", "device", "quantity",
                   "state", "opened_at", "open_value", "last_at", "hits", "cleared_at", "clear_value", "acked_at",
                   "acked_by", "ack_comment", "detail")


@router.get("", response_model=list[AlarmPublic], summary="Your alarms",
            description="Alarms of your organisation opened in [start, end), newest first, narrowed by state, rule, "
            "kind, severity, series, device or quantity. JSON (default), CSV or Parquet (`format`); in CSV and "
            "Parquet `detail` is a JSON text.",
            responses={**problem_responses(401, 422, 503),
                       200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}})
def read_alarms(
    conn: ConnDep, principal: PrincipalDep,
    state: Annotated[list[State] | None, Query()] = None,
    start: Annotated[Instant | None, Query(description="Inclusive start of opened_at.")] = None,
    end: Annotated[Instant | None, Query(description="Exclusive end of opened_at.")] = None,
    rule_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    kind: Annotated[Kind | None, Query()] = None,
    severity: Annotated[Severity | None, Query()] = None,
    series_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    device: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    quantity: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 100,
    format: Annotated[Format, Query(description="json (default), csv or parquet.")] = Format.json,
):
    if start is not None and end is not None and end <= start:
        raise Problem(422, "end must be after start")
    rows = store.list_alarms(conn, org=principal.org_slug, limit=limit, where=store.AlarmFilter(
        states=tuple(state) if state else None, since=start, until=end, rule_id=rule_id, kind=kind,
        severity=severity, series_id=series_id, device=device, quantity=quantity))
    if format is not Format.json:
        table = [tuple(json.dumps(r.detail, sort_keys=True) if c == "detail" else getattr(r, c)
                       for c in _EXPORT_COLUMNS) for r in rows]
        return table_response(_EXPORT_COLUMNS, table, fmt=format, name="alarms")
    return [AlarmPublic.model_validate(r) for r in rows]


@router.post("/{alarm_id}/ack", response_model=AlarmPublic, summary="Acknowledge an open alarm",
             responses=problem_responses(401, 404, 422, 503))
def acknowledge(conn: ConnDep, principal: PrincipalDep, alarm_id: Annotated[int, Path(ge=1, le=2**62)],
                body: Ack) -> AlarmPublic:
    alarm = store.acknowledge_alarm(conn, org=principal.org_slug, alarm_id=alarm_id, by=actor(principal),
                                    comment=body.comment)
    if alarm is None:
        raise Problem(404, f"your organisation has no open alarm {alarm_id}")
    return AlarmPublic.model_validate(alarm)
