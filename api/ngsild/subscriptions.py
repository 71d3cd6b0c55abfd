"""Subscriptions (clause 5.8, 6.10–6.11):

    POST   /ngsi-ld/v1/subscriptions          create (201, Location)
    GET    /ngsi-ld/v1/subscriptions          the organisation's, paged (limit, offset, count)
    GET    /ngsi-ld/v1/subscriptions/{id}     one, with its delivery status
    PATCH  /ngsi-ld/v1/subscriptions/{id}     change members (merge)
    DELETE /ngsi-ld/v1/subscriptions/{id}

HTTP notifications only (`notification.endpoint.uri` http or https), checked
against the outbound guard when the subscription is made and at each delivery.
Entity types, watched attributes and notified attributes are expanded against
the request's @context; notifications are compacted with it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from api.deps import ConnDep, ProviderDep
from api.ngsild.context import Context
from api.ngsild.entities import check_uri
from api.ngsild.errors import NgsiLdError
from citylab.outbound import OutboundError, check_url
from api.ngsild.payload import read_body
from api.ngsild.query import parse_q
from api.ngsild.request import AcceptDep, ContextDep, resolver_of
from api.ngsild.routes import MAX_LIMIT, respond
from storage.ngsild.subscriptions import StoredSubscription, create_subscription, delete_subscription, \
    get_subscription, list_subscriptions, update_subscription

__all__ = ["router"]

router = APIRouter(prefix="/ngsi-ld/v1/subscriptions", tags=["ngsi-ld"])

_MEMBERS = {"id", "type", "subscriptionName", "description", "entities", "watchedAttributes", "q", "notification",
            "expiresAt", "throttling", "isActive", "timeInterval", "geoQ", "lang", "jsonldContext", "@context"}


def _time(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse(body: dict[str, Any], ctx: Context, request: Request, *, partial: bool) -> dict[str, Any]:
    """The subscription's members checked, with terms expanded."""
    unknown = set(body) - _MEMBERS
    if unknown:
        raise NgsiLdError("BadRequestData", f"unknown subscription members: {', '.join(sorted(unknown))}")
    for unsupported in ("timeInterval", "geoQ"):
        if unsupported in body:
            raise NgsiLdError("OperationNotSupported", f"{unsupported} subscriptions are not supported")
    out: dict[str, Any] = {}
    if not partial and body.get("type") != "Subscription":
        raise NgsiLdError("BadRequestData", "type must be Subscription")
    if "entities" in body:
        if not isinstance(body["entities"], list) or not body["entities"]:
            raise NgsiLdError("BadRequestData", "entities must be a non-empty list of selectors")
        out["entities"] = []
        for selector in body["entities"]:
            if not isinstance(selector, dict) or not isinstance(selector.get("type"), str):
                raise NgsiLdError("BadRequestData", "each entities selector needs a type")
            item: dict[str, Any] = {"type": ctx.expand(selector["type"])}
            if "id" in selector:
                check_uri(selector["id"])
                item["id"] = selector["id"]
            if "idPattern" in selector:
                item["idPattern"] = str(selector["idPattern"])
            out["entities"].append(item)
    if "watchedAttributes" in body:
        names = body["watchedAttributes"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise NgsiLdError("BadRequestData", "watchedAttributes must be a non-empty list of names")
        out["watchedAttributes"] = sorted({ctx.expand(n) for n in names})
    if "q" in body:
        if not isinstance(body["q"], str):
            raise NgsiLdError("BadRequestData", "q must be a string")
        parse_q(body["q"])
        out["q"] = body["q"]
    if "notification" in body:
        notification = body["notification"]
        endpoint = notification.get("endpoint") if isinstance(notification, dict) else None
        if not isinstance(endpoint, dict) or not isinstance(endpoint.get("uri"), str):
            raise NgsiLdError("BadRequestData", "notification.endpoint.uri is required")
        try:
            check_url(endpoint["uri"], request.app.state.ngsild_outbound)
        except OutboundError as exc:
            raise NgsiLdError("BadRequestData", f"notification.endpoint.uri: {exc}") from None
        accept = endpoint.get("accept", "application/json")
        if accept not in ("application/json", "application/ld+json"):
            raise NgsiLdError("BadRequestData", f"notification.endpoint.accept {accept!r} is not supported")
        fmt = notification.get("format", "normalized")
        if fmt not in ("normalized", "concise", "keyValues"):
            raise NgsiLdError("BadRequestData", f"notification.format {fmt!r} is not supported")
        attributes = notification.get("attributes")
        out["notification"] = {"endpoint": {"uri": endpoint["uri"], "accept": accept}, "format": fmt,
                               "attributes": sorted({ctx.expand(a) for a in attributes}) if attributes else None}
    for name in ("subscriptionName", "description"):
        if name in body:
            out[name] = str(body[name])
    if not partial:
        if "notification" not in out:
            raise NgsiLdError("BadRequestData", "a subscription needs a notification")
        if "entities" not in out and "watchedAttributes" not in out:
            raise NgsiLdError("BadRequestData", "a subscription needs entities or watchedAttributes")
    return out


def _options(body: dict[str, Any], current: StoredSubscription | None) -> tuple[bool, datetime | None, float | None]:
    active = body.get("isActive", current.active if current else True)
    if not isinstance(active, bool):
        raise NgsiLdError("BadRequestData", "isActive must be true or false")
    expires = current.expires_at if current else None
    if "expiresAt" in body:
        try:
            expires = datetime.fromisoformat(str(body["expiresAt"]).replace("Z", "+00:00"))
        except ValueError:
            raise NgsiLdError("BadRequestData", "expiresAt is not an ISO 8601 date-time") from None
        if expires.tzinfo is None:
            raise NgsiLdError("BadRequestData", "expiresAt has no time zone")
    throttling = body.get("throttling", current.throttling_s if current else None)
    if throttling is not None and (isinstance(throttling, bool) or not isinstance(throttling, (int, float))
                                   or throttling <= 0):
        raise NgsiLdError("BadRequestData", "throttling must be a positive number of seconds")
    return active, expires, throttling


def _public(sub: StoredSubscription, ctx: Context) -> dict[str, Any]:
    spec = sub.subscription
    body: dict[str, Any] = {"id": sub.id, "type": "Subscription"}
    for name in ("subscriptionName", "description", "q"):
        if name in spec:
            body[name] = spec[name]
    if spec.get("entities"):
        body["entities"] = [{**e, "type": ctx.compact(e["type"])} for e in spec["entities"]]
    if spec.get("watchedAttributes"):
        body["watchedAttributes"] = [ctx.compact(a) for a in spec["watchedAttributes"]]
    notification = dict(spec["notification"])
    if notification.get("attributes"):
        notification["attributes"] = [ctx.compact(a) for a in notification["attributes"]]
    else:
        notification.pop("attributes", None)
    failing = sub.last_failure is not None and (sub.last_success is None or sub.last_failure > sub.last_success)
    notification.update({"timesSent": sub.times_sent, "timesFailed": sub.times_failed,
                         "status": "failed" if failing else "ok"})
    for name, value in (("lastNotification", sub.last_notification), ("lastSuccess", sub.last_success),
                        ("lastFailure", sub.last_failure)):
        if value is not None:
            notification[name] = _time(value)
    if failing and sub.last_error:
        notification["lastErrorReason"] = sub.last_error
    body["notification"] = notification
    expired = sub.expires_at is not None and sub.expires_at <= datetime.now(UTC)
    body.update({"isActive": sub.active, "status": "expired" if expired else "active" if sub.active else "paused",
                 "jsonldContext": next((c for c in sub.context if isinstance(c, str)), None)})
    if sub.expires_at is not None:
        body["expiresAt"] = _time(sub.expires_at)
    if sub.throttling_s is not None:
        body["throttling"] = sub.throttling_s
    body["createdAt"], body["modifiedAt"] = _time(sub.created_at), _time(sub.modified_at)
    return body


@router.post("", status_code=201, summary="Create a subscription")
async def create(request: Request, conn: ConnDep, principal: ProviderDep) -> Response:
    body, ctx = await read_body(request, resolver_of(request))
    if not isinstance(body, dict):
        raise NgsiLdError("BadRequestData", "a subscription is a JSON object")
    spec = _parse(body, ctx, request, partial=False)
    sub_id = body.get("id") or f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"
    check_uri(sub_id, "subscription id")
    active, expires, throttling = _options(body, None)
    created = create_subscription(conn, id=sub_id, org_id=principal.org_id, org=principal.org_slug,
                                  tenant=request.headers.get("ngsild-tenant"), subscription=spec,
                                  context=ctx.value, active=active, expires_at=expires, throttling_s=throttling)
    if created is None:
        raise NgsiLdError("AlreadyExists", f"subscription {sub_id} already exists")
    return Response(status_code=201, headers={"Location": f"/ngsi-ld/v1/subscriptions/{sub_id}"})


@router.get("", summary="The organisation's subscriptions")
def read_all(conn: ConnDep, principal: ProviderDep, ctx: ContextDep, accept: AcceptDep,
             limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = 20, offset: Annotated[int, Query(ge=0)] = 0,
             count: bool = False) -> Response:
    rows, total = list_subscriptions(conn, org_id=principal.org_id, offset=offset, limit=limit)
    headers = {"NGSILD-Results-Count": str(total)} if count else {}
    return respond([_public(r, ctx) for r in rows], accept=accept, ctx=ctx, headers=headers)


def _one(conn, principal, sub_id: str) -> StoredSubscription:
    found = get_subscription(conn, org_id=principal.org_id, id=sub_id)
    if found is None:
        raise NgsiLdError("ResourceNotFound", f"no subscription {sub_id}")
    return found


@router.get("/{subscriptionId:path}", summary="One subscription")
def read_one(subscriptionId: str, conn: ConnDep, principal: ProviderDep, ctx: ContextDep, accept: AcceptDep
             ) -> Response:
    return respond(_public(_one(conn, principal, subscriptionId), ctx), accept=accept, ctx=ctx)


@router.patch("/{subscriptionId:path}", status_code=204, summary="Update a subscription")
async def update(subscriptionId: str, request: Request, conn: ConnDep, principal: ProviderDep) -> Response:
    current = _one(conn, principal, subscriptionId)
    body, ctx = await read_body(request, resolver_of(request))
    if not isinstance(body, dict) or not body:
        raise NgsiLdError("BadRequestData", "a subscription fragment is a non-empty JSON object")
    if "id" in body and body["id"] != subscriptionId:
        raise NgsiLdError("BadRequestData", "the id of a subscription cannot change")
    spec = {**current.subscription, **_parse(body, ctx, request, partial=True)}
    active, expires, throttling = _options(body, current)
    update_subscription(conn, org_id=principal.org_id, id=subscriptionId, subscription=spec, active=active,
                        expires_at=expires, throttling_s=throttling)
    return Response(status_code=204)


@router.delete("/{subscriptionId:path}", status_code=204, summary="Delete a subscription")
def delete(subscriptionId: str, conn: ConnDep, principal: ProviderDep) -> Response:
    if not delete_subscription(conn, org_id=principal.org_id, id=subscriptionId):
        raise NgsiLdError("ResourceNotFound", f"no subscription {subscriptionId}")
    return Response(status_code=204)
