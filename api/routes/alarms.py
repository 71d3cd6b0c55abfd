"""/v1/alarms: your organisation's threshold rules and the alarms their episodes opened.

A rule watches one of your series (above or below `on` for `hold_s` seconds, cleared back
beyond `off`); ingest evaluates it on every batch (ingest/rules.py) and opens one alarm per
episode, which you acknowledge with a comment and which clears when the condition ends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ConnDep, PrincipalDep, actor
from api.errors import Problem
from api.params import Instant
from api.routes import problem_responses
from storage import alarms as store
from storage.audit import record_change
from storage.errors import StorageError

router = APIRouter(prefix="/alarms", tags=["alarms"])

State = Literal["open", "acknowledged", "cleared"]


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    series_id: int = Field(ge=1, le=2**31 - 1)
    on: float = Field(allow_inf_nan=False, description="The limit: the value beyond it opens an episode.")
    off: float | None = Field(None, allow_inf_nan=False,
                              description="Back beyond it the episode clears (hysteresis); default `on`.")
    hold_s: float = Field(0.0, ge=0, lt=3_162_240_000, description="Seconds beyond `on` before it opens.")
    above: bool = True
    severity: Literal["info", "warning", "critical"] = "warning"


class RulePublic(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    id: int
    name: str
    series_id: int
    above: bool
    on_value: float
    off_value: float
    hold_s: float
    severity: str
    enabled: bool


class AlarmPublic(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    id: int
    rule_id: int
    series_id: int
    state: State
    opened_at: datetime
    open_value: float
    cleared_at: datetime | None
    clear_value: float | None
    acked_at: datetime | None
    acked_by: str | None
    ack_comment: str | None


class Ack(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field(min_length=1, max_length=2000)


@router.post("/rules", response_model=RulePublic, status_code=201, summary="Create a threshold rule",
             description="A rule on one of your organisation's series, e.g. PM2.5 above 25 for 15 minutes, "
             "cleared below 20: `on` 25, `off` 20, `hold_s` 900.", responses=problem_responses(401, 404, 409, 422, 503))
def create_rule(conn: ConnDep, principal: PrincipalDep, body: RuleCreate) -> RulePublic:
    off = body.on if body.off is None else body.off
    if (body.above and off > body.on) or (not body.above and off < body.on):
        side, kind = ("<=", "an above") if body.above else (">=", "a below")
        raise Problem(422, f"off must be {side} on for {kind} rule")
    try:
        rule = store.create_rule(conn, org=principal.org_slug, name=body.name, series_id=body.series_id, on=body.on,
                                 off=off, hold_s=body.hold_s, above=body.above, severity=body.severity)
    except store.SeriesNotFound as exc:
        raise Problem(404, f"your organisation has no series {body.series_id}") from exc
    except StorageError as exc:
        if exc.sqlstate == "23505":  # unique (org, name)
            raise Problem(409, f"your organisation already has a rule named {body.name!r}") from exc
        raise
    record_change(conn, actor=actor(principal), action="alarm_rule.create", org_id=principal.org_id,
                  key_id=principal.key_id, owner_org=principal.org_id, detail={"rule_id": rule.id})
    return RulePublic.model_validate(rule)


@router.get("/rules", response_model=list[RulePublic], summary="Your threshold rules",
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


@router.get("", response_model=list[AlarmPublic], summary="Your alarms",
            description="Alarms of your organisation opened in [start, end), newest first, optionally only in "
            "the given states.", responses=problem_responses(401, 422, 503))
def read_alarms(
    conn: ConnDep, principal: PrincipalDep,
    state: Annotated[list[State] | None, Query()] = None,
    start: Annotated[Instant | None, Query(description="Inclusive start of opened_at.")] = None,
    end: Annotated[Instant | None, Query(description="Exclusive end of opened_at.")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[AlarmPublic]:
    if start is not None and end is not None and end <= start:
        raise Problem(422, "end must be after start")
    rows = store.list_alarms(conn, org=principal.org_slug, states=state, since=start, until=end, limit=limit)
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
