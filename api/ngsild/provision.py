"""Context information provision (clause 5.6, 6.4–6.8, 6.14–6.17, 6.20–6.22):

    POST   /ngsi-ld/v1/entities                        create
    PATCH  /ngsi-ld/v1/entities/{id}/attrs             update attributes (existing ones)
    POST   /ngsi-ld/v1/entities/{id}/attrs             append attributes (options=noOverwrite)
    DELETE /ngsi-ld/v1/entities/{id}                   delete (context entities)
    POST   /ngsi-ld/v1/entityOperations/create|upsert|update|delete   batches
    PATCH  /ngsi-ld/v1/entities/{id}                   merge
    PUT    /ngsi-ld/v1/entities/{id}                   replace
    PATCH  /ngsi-ld/v1/entities/{id}/attrs/{attr}      partial update of one attribute
    DELETE /ngsi-ld/v1/entities/{id}/attrs/{attr}      delete one attribute (context entities)

(history in bulk: `backfill`; the write machinery shared with it: `writes`)

An entity with one of our device ids (`urn:ngsi-ld:<Model>:<org>:<device>`)
is an observation of that device: its measured attributes become readings
through the ingest pipeline (`api.ingest_door`, via `writes.Write`); creating one for an
unknown device onboards the device (a provider or admin key, as
`POST /v1/devices`). Any other entity is a context entity of the caller's
organisation (`storage.ngsild.context`); its numeric Properties with
`observedAt` become readings too when a Relationship links it to one of our
devices. Every write needs a provider or admin key and goes to the key's own
organisation.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from api.deps import ConnDep, ProviderDep
from api.errors import Problem
from api.ngsild.entities import LOCATION, check_uri, parse_entity_id
from api.ngsild.errors import NgsiLdError
from api.ngsild.payload import normalize_attribute, normalize_attributes, point_of, read_body
from api.ngsild.request import ContextDep, resolver_of
from api.ngsild.vocabulary import MODELS
from api.ngsild.writes import DATE_OBSERVED, Planned, Write, delete_one, plan, problem_of, reject_refused, tenant_of
from storage.ngsild.context import context_entity, replace_context_entity
from storage.tenants import Principal

__all__ = ["router"]

router = APIRouter(prefix="/ngsi-ld/v1", tags=["ngsi-ld"])

@router.post("/entities", status_code=201, summary="Create an entity")
async def create_entity(request: Request, conn: ConnDep, principal: ProviderDep) -> Response:
    body, ctx = await read_body(request, resolver_of(request))
    if isinstance(body, list):
        raise NgsiLdError("BadRequestData", "POST /entities takes one entity; use /entityOperations/create")
    write = Write(conn, principal, request)
    planned = plan(write, body, ctx, mode="create")
    reject_refused(write.commit())
    if planned.store is not None:
        planned.store()
    write.notify()
    return Response(status_code=201, headers={"Location": f"/ngsi-ld/v1/entities/{planned.entity_id}"})


def _batch(items: Any) -> list[Any]:
    if not isinstance(items, list) or not items:
        raise NgsiLdError("BadRequestData", "a batch operation takes a non-empty JSON array")
    if len(items) > 1000:
        raise NgsiLdError("TooManyResults", "a batch takes at most 1000 entities")
    return items


def _batch_result(success: list[str], errors: list[dict[str, Any]], *, created: list[str] | None = None,
                  ok_status: int = 204) -> Response:
    if errors:
        return JSONResponse({"success": success, "errors": errors}, status_code=207)
    if ok_status == 201:
        return JSONResponse(created if created is not None else success, status_code=201)
    return Response(status_code=204)


def _error(entity_id: Any, exc: Exception) -> dict[str, Any]:
    if isinstance(exc, NgsiLdError):
        return {"entityId": entity_id, "error": problem_of(exc)}
    assert isinstance(exc, Problem)
    return {"entityId": entity_id, "error": {"type": "about:blank", "title": exc.title, "status": exc.status,
                                             "detail": exc.detail}}


async def _entity_batch(request: Request, conn, principal: Principal, mode: str) -> Response:
    """Check every entity, commit all their readings in one pipeline batch,
    then store the context entities whose readings were taken."""
    body, ctx = await read_body(request, resolver_of(request))
    write = Write(conn, principal, request)
    write.prefetch([i.get("id") for i in _batch(body) if isinstance(i, dict) and isinstance(i.get("id"), str)])
    planned: list[Planned] = []
    errors: list[dict[str, Any]] = []
    for item in _batch(body):
        entity_id = item.get("id") if isinstance(item, dict) else None
        try:
            planned.append(plan(write, item, ctx, mode=mode))
        except (NgsiLdError, Problem) as exc:
            errors.append(_error(entity_id, exc))
    refused = write.commit()
    success, created = [], []
    for each in planned:
        if each.entity_id in refused:
            errors.append(_error(each.entity_id, NgsiLdError(
                "BadRequestData", f"the ingest pipeline refused the observations: {refused[each.entity_id]}")))
            continue
        try:
            if each.store is not None:
                each.store()
        except (NgsiLdError, Problem) as exc:
            errors.append(_error(each.entity_id, exc))
            continue
        success.append(each.entity_id)
        if each.created:
            created.append(each.entity_id)
    write.notify(only=success)
    if mode == "create":
        return _batch_result(success, errors, ok_status=201)
    if mode in ("upsert", "merge"):
        return _batch_result(success, errors, created=created, ok_status=201 if created else 204)
    return _batch_result(success, errors)


@router.post("/entityOperations/create", summary="Batch entity creation")
async def create_entities(request: Request, conn: ConnDep, principal: ProviderDep) -> Response:
    return await _entity_batch(request, conn, principal, "create")


@router.post("/entityOperations/upsert", summary="Batch entity create or replace")
async def upsert_entities(request: Request, conn: ConnDep, principal: ProviderDep,
                          options: Annotated[str | None, Query(max_length=40)] = None) -> Response:
    if options not in (None, "replace", "update"):
        raise NgsiLdError("BadRequestData", f"options {options!r}: upsert takes replace or update")
    return await _entity_batch(request, conn, principal, "merge" if options == "update" else "upsert")


@router.post("/entityOperations/update", summary="Batch entity update")
async def update_entities(request: Request, conn: ConnDep, principal: ProviderDep,
                          options: Annotated[str | None, Query(max_length=40)] = None) -> Response:
    if options not in (None, "noOverwrite"):
        raise NgsiLdError("BadRequestData", f"options {options!r}: update takes noOverwrite")
    return await _entity_batch(request, conn, principal, "update")


@router.post("/entityOperations/delete", summary="Batch entity deletion")
async def delete_entities(request: Request, conn: ConnDep, principal: ProviderDep) -> Response:
    raw = await request.body()
    try:
        import json

        ids = json.loads(raw)
    except ValueError:
        raise NgsiLdError("InvalidRequest", "the body is not JSON") from None
    org = tenant_of(principal, request)
    success, errors = [], []
    for entity_id in _batch(ids):
        try:
            if not isinstance(entity_id, str):
                raise NgsiLdError("BadRequestData", "a batch delete takes entity ids")
            delete_one(conn, principal, org, entity_id)
            success.append(entity_id)
        except NgsiLdError as exc:
            errors.append({"entityId": entity_id, "error": problem_of(exc)})
    return _batch_result(success, errors)


# Attribute routes come before the entity routes: an entity id may contain "/".


@router.delete("/entities/{entityId:path}/attrs/{attrId}", status_code=204, summary="Delete an attribute")
def delete_attribute(entityId: str, attrId: str, conn: ConnDep, principal: ProviderDep, request: Request,
                     ctx: ContextDep) -> Response:
    check_uri(entityId)
    org = tenant_of(principal, request)
    if parse_entity_id(entityId) is not None:
        raise NgsiLdError("OperationNotSupported", f"{entityId} is a citylab device's entity: its attributes are "
                                                   "its series")
    iri = ctx.expand(attrId)
    with conn.transaction():
        current = context_entity(conn, org=org, entity_id=entityId, for_update=True)
        if current is None or iri not in current.attributes:
            raise NgsiLdError("ResourceNotFound", f"no attribute {attrId!r} of entity {entityId}")
        rest = {k: v for k, v in current.attributes.items() if k != iri}
        replace_context_entity(conn, org=org, entity_id=entityId, entity_type=current.type, attributes=rest,
                               point=point_of(rest, LOCATION))
    return Response(status_code=204)


@router.patch("/entities/{entityId:path}/attrs/{attrId}", status_code=204, summary="Partial attribute update")
async def update_attribute(entityId: str, attrId: str, request: Request, conn: ConnDep, principal: ProviderDep
                           ) -> Response:
    check_uri(entityId)
    fragment, ctx = await read_body(request, resolver_of(request))
    if not isinstance(fragment, dict):
        raise NgsiLdError("BadRequestData", "the attribute fragment must be a JSON object")
    iri = ctx.expand(attrId)
    key = parse_entity_id(entityId)
    if key is None:
        current = context_entity(conn, org=tenant_of(principal, request), entity_id=entityId)
        if current is None or iri not in current.attributes:
            raise NgsiLdError("ResourceNotFound", f"no attribute {attrId!r} of entity {entityId}")
        fragment = {**current.attributes[iri], **fragment}
    return await _attrs(request, conn, principal, entityId, append=False, no_overwrite=False,
                        given=({iri: fragment}, ctx))


@router.delete("/entities/{entityId:path}", status_code=204, summary="Delete an entity")
def delete_entity(entityId: str, conn: ConnDep, principal: ProviderDep, request: Request) -> Response:
    delete_one(conn, principal, tenant_of(principal, request), entityId)
    return Response(status_code=204)


async def _attrs(request: Request, conn, principal: Principal, entity_id: str, *, append: bool,
                 no_overwrite: bool, given: tuple[dict[str, Any], Any] | None = None,
                 fragment_of_entity: bool = False) -> Response:
    """Update (append=False), append or merge attributes. `given`: attributes by IRI
    already read (one attribute's update)."""
    check_uri(entity_id)
    if given is not None:
        raw, ctx = given
        attributes = {iri: normalize_attribute(ctx.compact(iri), value, ctx) for iri, value in raw.items()}
    else:
        fragment, ctx = await read_body(request, resolver_of(request))
        if fragment_of_entity and isinstance(fragment, dict):
            if fragment.get("id", entity_id) != entity_id:
                raise NgsiLdError("BadRequestData", "the id in the body differs from the id in the path")
            fragment = {k: v for k, v in fragment.items() if k not in ("id", "type")}
        attributes = normalize_attributes(fragment, ctx)
    if not attributes:
        raise NgsiLdError("BadRequestData", "no attributes to update")
    write = Write(conn, principal, request)
    key = parse_entity_id(entity_id)
    not_updated: list[dict[str, str]] = []
    # No transaction is open while the pipeline commits: it may create a day's
    # partition, which waits for every transaction that has read the readings.
    if key is not None:
        write.device(key, entity_id, must_exist=True)
        model = MODELS[key.model]
        known = {a.iri for a in model.attributes} | {DATE_OBSERVED}
        for iri in [i for i in attributes if i not in known]:
            not_updated.append({"attributeName": ctx.compact(iri), "reason": f"not a measured attribute of {model.name}"})
            del attributes[iri]
        if attributes:
            write.observe(key, attributes, entity_id)
            write.changed(entity_id, attributes)
        reject_refused(write.commit())
    else:
        current = context_entity(conn, org=write.org, entity_id=entity_id)
        if current is None:
            raise NgsiLdError("ResourceNotFound", f"no entity {entity_id}")
        taken = {}
        for iri, attribute in attributes.items():
            exists = iri in current.attributes
            if (not append and not exists) or (append and no_overwrite and exists):
                not_updated.append({"attributeName": ctx.compact(iri), "reason":
                                    "no such attribute" if not exists else "exists (noOverwrite)"})
            else:
                taken[iri] = attribute
        write.link({**current.attributes, **taken}, entity_id, readings_from=taken)
        reject_refused(write.commit())
        with conn.transaction():
            latest = context_entity(conn, org=write.org, entity_id=entity_id, for_update=True)
            if latest is None:
                raise NgsiLdError("ResourceNotFound", f"no entity {entity_id}")
            merged = {**latest.attributes, **taken}
            replace_context_entity(conn, org=write.org, entity_id=entity_id, entity_type=latest.type,
                                   attributes=merged, point=point_of(merged, LOCATION))
        write.changed(entity_id, taken)
    write.notify()
    if not_updated:
        updated = [ctx.compact(i) for i in attributes if all(n["attributeName"] != ctx.compact(i) for n in not_updated)]
        return JSONResponse({"updated": updated, "notUpdated": not_updated}, status_code=207)
    return Response(status_code=204)


@router.patch("/entities/{entityId:path}/attrs", status_code=204, summary="Update attributes")
async def update_attributes(entityId: str, request: Request, conn: ConnDep, principal: ProviderDep) -> Response:
    return await _attrs(request, conn, principal, entityId, append=False, no_overwrite=False)


@router.post("/entities/{entityId:path}/attrs", status_code=204, summary="Append attributes")
async def append_attributes(entityId: str, request: Request, conn: ConnDep, principal: ProviderDep,
                            options: Annotated[str | None, Query(max_length=40)] = None) -> Response:
    if options not in (None, "noOverwrite"):
        raise NgsiLdError("BadRequestData", f"options {options!r}: append takes noOverwrite")
    return await _attrs(request, conn, principal, entityId, append=True, no_overwrite=options == "noOverwrite")


# After every /entities/{id}/... route: the path converter of the entity id takes "/".


@router.patch("/entities/{entityId:path}", status_code=204, summary="Merge an entity")
async def merge_entity(entityId: str, request: Request, conn: ConnDep, principal: ProviderDep) -> Response:
    return await _attrs(request, conn, principal, entityId, append=True, no_overwrite=False, fragment_of_entity=True)


@router.put("/entities/{entityId:path}", status_code=204, summary="Replace an entity")
async def replace_entity(entityId: str, request: Request, conn: ConnDep, principal: ProviderDep) -> Response:
    check_uri(entityId)
    body, ctx = await read_body(request, resolver_of(request))
    if not isinstance(body, dict):
        raise NgsiLdError("BadRequestData", "an entity is a JSON object")
    if body.get("id", entityId) != entityId:
        raise NgsiLdError("BadRequestData", "the id in the body differs from the id in the path")
    write = Write(conn, principal, request)
    current_type = None
    key = parse_entity_id(entityId)
    if key is None:
        current = context_entity(conn, org=write.org, entity_id=entityId)
        if current is None:
            raise NgsiLdError("ResourceNotFound", f"no entity {entityId}")
        current_type = current.type
    body = {**body, "id": entityId}
    if "type" not in body:
        body["type"] = current_type or MODELS[key.model].type_iri  # type: ignore[union-attr]
    planned = plan(write, body, ctx, mode="update" if current_type is None else "upsert")
    reject_refused(write.commit())
    if planned.store is not None:
        planned.store()
    write.notify()
    return Response(status_code=204)
