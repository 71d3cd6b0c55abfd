"""Temporal provision (clause 6.20–6.22): history in bulk.

    POST   /ngsi-ld/v1/temporal/entities               create or add history (instances per attribute)
    POST   /ngsi-ld/v1/temporal/entities/{id}/attrs    add history to an entity
    DELETE /ngsi-ld/v1/temporal/entities/{id}          delete (context entities)

Instances of our device entities' measured attributes (each with observedAt)
enter the ingest pipeline in packs of 5000 readings, so late data corrects the
aggregates it falls into; an unknown device is onboarded. A context entity
keeps the latest instance of each attribute; its numeric instances become
readings when it is linked to one of our devices.
"""


from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from api.deps import ConnDep, ProviderDep
from api.ngsild.entities import LOCATION, check_uri, parse_entity_id
from api.ngsild.errors import NgsiLdError
from api.ngsild.observations import model_readings, now_s
from api.ngsild.payload import normalize_attribute, point_of, read_body
from api.ngsild.request import resolver_of
from api.ngsild.vocabulary import MODELS
from api.ngsild.writes import Write, delete_one, reject_refused, tenant_of
from storage.ngsild.context import context_entity, replace_context_entity
from storage.tenants import Principal

__all__ = ["router"]

router = APIRouter(prefix="/ngsi-ld/v1", tags=["ngsi-ld"])


def _temporal_attributes(body: dict[str, Any], ctx) -> dict[str, list[dict[str, Any]]]:
    """Attribute IRI -> its instances (each normalized)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, raw in body.items():
        if name in ("id", "type", "@context", "createdAt", "modifiedAt"):
            continue
        instances = raw if isinstance(raw, list) else [raw]
        if not instances:
            continue
        out[ctx.expand(name)] = [normalize_attribute(name, i, ctx) for i in instances]
    return out


async def _temporal_write(request: Request, conn, principal: Principal, body: Any, ctx, entity_id: str,
                          entity_type: str | None) -> bool:
    """Add the instances; True when the entity was created."""
    check_uri(entity_id)
    attributes = _temporal_attributes(body, ctx)
    write = Write(conn, principal, request)
    key = parse_entity_id(entity_id)
    if key is not None:
        model = MODELS[key.model]
        if entity_type is not None and model.type_iri != ctx.expand(entity_type):
            raise NgsiLdError("BadRequestData", f"{entity_id} is a {key.model} entity")
        found = write.device(key, entity_id, must_exist=entity_type is None)
        refused = sorted(set(attributes) - {a.iri for a in model.attributes} - {LOCATION})
        if refused:
            raise NgsiLdError("BadRequestData", f"{entity_id}: history is kept for the measured attributes "
                                                f"of {model.name}, not {', '.join(refused)}")
        for spec in model.attributes:
            if any("observedAt" not in i for i in attributes.get(spec.iri, [])):
                raise NgsiLdError("BadRequestData", f"every instance of {spec.attribute} needs observedAt")
        readings = model_readings(model, {k: v for k, v in attributes.items() if k != LOCATION},
                                  default_time=now_s())
        if not found:
            write.onboard(key, {k: v[-1] for k, v in attributes.items()}, entity_id)
        write.add(key.org, key.device, readings, entity_id)
        reject_refused(write.commit())
        write.changed(entity_id, attributes)
        write.notify()
        return not found
    current = context_entity(conn, org=write.org, entity_id=entity_id)
    if current is None and entity_type is None:
        raise NgsiLdError("ResourceNotFound", f"no entity {entity_id}")
    latest = {iri: max(instances, key=lambda i: i.get("observedAt", "")) for iri, instances in attributes.items()}
    write.link({**(current.attributes if current else {}), **latest}, entity_id, readings_from=attributes)
    reject_refused(write.commit())   # before the transaction: see _attrs
    with conn.transaction():
        current = context_entity(conn, org=write.org, entity_id=entity_id, for_update=True)
        merged = {**(current.attributes if current else {}), **latest}
        _, created = replace_context_entity(
            conn, org=write.org, entity_id=entity_id,
            entity_type=current.type if current else ctx.expand(entity_type),
            attributes=merged, point=point_of(merged, LOCATION))
    write.changed(entity_id, attributes)
    write.notify()
    return created


@router.post("/temporal/entities", summary="Create or add to the temporal evolution of an entity")
async def create_temporal_entity(request: Request, conn: ConnDep, principal: ProviderDep) -> Response:
    body, ctx = await read_body(request, resolver_of(request))
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not isinstance(body.get("type"), str):
        raise NgsiLdError("BadRequestData", "a temporal entity needs id and type")
    created = await _temporal_write(request, conn, principal, body, ctx, body["id"], body["type"])
    if created:
        return Response(status_code=201, headers={"Location": f"/ngsi-ld/v1/temporal/entities/{body['id']}"})
    return Response(status_code=204)


@router.post("/temporal/entities/{entityId:path}/attrs", status_code=204, summary="Add attribute instances")
async def append_temporal_attributes(entityId: str, request: Request, conn: ConnDep, principal: ProviderDep
                                     ) -> Response:
    body, ctx = await read_body(request, resolver_of(request))
    if not isinstance(body, dict):
        raise NgsiLdError("BadRequestData", "the attributes must be a JSON object")
    await _temporal_write(request, conn, principal, body, ctx, entityId, None)
    return Response(status_code=204)


@router.delete("/temporal/entities/{entityId:path}", status_code=204, summary="Delete a temporal entity")
def delete_temporal_entity(entityId: str, conn: ConnDep, principal: ProviderDep, request: Request) -> Response:
    delete_one(conn, principal, tenant_of(principal, request), entityId)
    return Response(status_code=204)


