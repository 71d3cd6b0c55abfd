"""Context information provision (clause 5.6, 6.4–6.8, 6.14–6.17, 6.20–6.22):

    POST   /ngsi-ld/v1/entities                        create
    PATCH  /ngsi-ld/v1/entities/{id}/attrs             update attributes (existing ones)
    POST   /ngsi-ld/v1/entities/{id}/attrs             append attributes (options=noOverwrite)
    DELETE /ngsi-ld/v1/entities/{id}                   delete (context entities)
    POST   /ngsi-ld/v1/entityOperations/create|upsert|update|delete   batches
    POST   /ngsi-ld/v1/temporal/entities               create or add history (instances per attribute)
    POST   /ngsi-ld/v1/temporal/entities/{id}/attrs    add history to an entity
    DELETE /ngsi-ld/v1/temporal/entities/{id}          delete (context entities)

An entity with one of our device ids (`urn:ngsi-ld:<Model>:<org>:<device>`)
is an observation of that device: its measured attributes become readings
through the ingest pipeline (`observations.IngestDoor`); creating one for an
unknown device onboards the device (a provider or admin key, as
`POST /v1/devices`). Any other entity is a context entity of the caller's
organisation (`storage.ngsild.context`); its numeric Properties with
`observedAt` become readings too when a Relationship links it to one of our
devices. Every write needs a provider or admin key and goes to the key's own
organisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from api.deps import ConnDep, ProviderDep
from api.errors import Problem
from api.ngsild.entities import LOCATION, check_uri, parse_entity_id
from api.ngsild.errors import NgsiLdError
from api.ngsild.observations import IngestDoor, Reading, linked_readings, model_readings, now_s
from api.ngsild.payload import normalize_attributes, normalize_entity, point_of, read_body
from api.ngsild.request import ContextDep, resolver_of
from api.ngsild.vocabulary import MODELS
from storage import ngsild as store
from storage import tenants
from storage.ngsild.context import EntityExists, context_entity, delete_context_entity, insert_context_entity, \
    replace_context_entity
from storage.tenants import Principal

__all__ = ["router"]

router = APIRouter(prefix="/ngsi-ld/v1", tags=["ngsi-ld"])

_DEVICE = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_DATE_OBSERVED = "https://smartdatamodels.org/dateObserved"


def door_of(request: Request) -> IngestDoor:
    return request.app.state.ngsild_ingest


def _tenant(principal: Principal, request: Request) -> str:
    tenant = request.headers.get("ngsild-tenant")
    if tenant is not None and tenant != principal.org_slug:
        raise NgsiLdError("NonexistentTenant", f"no tenant {tenant!r} your API key may write to")
    return principal.org_slug


def _problem(exc: NgsiLdError) -> dict[str, Any]:
    return {"type": f"https://uri.etsi.org/ngsi-ld/errors/{exc.kind}", "title": exc.title, "status": exc.status,
            "detail": exc.detail}


class _Write:
    """One request's writes: readings gathered per device, committed together."""

    def __init__(self, conn, principal: Principal, request: Request) -> None:
        self.conn = conn
        self.principal = principal
        self.org = _tenant(principal, request)
        self.door = door_of(request)
        self.packs: list[tuple[str, str, list[Reading]]] = []
        self.owners: list[str] = []      # entity id of each pack
        self.notifier = request.app.state.ngsild_notifier
        self.changes: dict[str, set[str]] = {}   # entity id -> attribute IRIs written
        self.known: set[str] = set()     # devices of the batch that are registered
        self.checked: set[str] = set()   # devices of the batch looked up

    def changed(self, entity_id: str, iris) -> None:
        self.changes.setdefault(entity_id, set()).update(iris)

    def notify(self, *, only: list[str] | None = None) -> None:
        """After the commit: hand the changes to the notifier (it never blocks the answer)."""
        changes = [(e, a) for e, a in self.changes.items() if only is None or e in only]
        self.notifier.changed(self.org, self.principal.org_id, changes)

    # derived entities ------------------------------------------------------

    def prefetch(self, entity_ids: list[str]) -> None:
        """Look up the devices of a batch's device entities in one statement."""
        devices = [k.device for k in (parse_entity_id(i) for i in entity_ids) if k is not None and k.org == self.org]
        if devices:
            self.known = store.known_devices(self.conn, org=self.org, devices=devices)
            self.checked = set(devices)

    def device(self, key: store.EntityKey, entity_id: str, *, must_exist: bool) -> bool:
        """Whether the entity's device is registered (it must be one of the caller's organisation)."""
        if key.org != self.org:
            raise Problem(403, f"{entity_id}: your key writes only entities of organisation {self.org!r}")
        if key.device in self.checked:
            found = key.device in self.known
        else:
            found = store.known_devices(self.conn, org=key.org, devices=[key.device]) != set()
        if not found and must_exist:
            raise NgsiLdError("ResourceNotFound", f"no entity {entity_id}")
        return found

    def onboard(self, key: store.EntityKey, attributes: dict[str, Any], entity_id: str) -> None:
        import re

        if not re.match(_DEVICE, key.device):
            raise NgsiLdError("BadRequestData", f"{entity_id}: device name {key.device!r} must match {_DEVICE}")
        point = point_of(attributes, LOCATION)
        model = MODELS[key.model]
        sensors = [tenants.SensorSpec(a.quantity, None, None, None, None) for a in model.attributes
                   if a.iri in attributes]
        try:
            tenants.onboard_device(self.conn, org=key.org, device=key.device, gateway=None, kind="sensor",
                                   lat=point[1] if point else None, lon=point[0] if point else None,
                                   dev_eui=None, lora_channels=None, sensors=[])
        except tenants.DeviceConflict:
            raise NgsiLdError("AlreadyExists", f"{entity_id}: the device name {key.device!r} is taken") from None
        self.door.registry_changed()
        del sensors  # series are created by the pipeline with the units the readings carry

    def check(self, key: store.EntityKey, attributes: dict[str, Any], entity_id: str) -> None:
        """Refuse what our device entity cannot take: nothing is silently dropped."""
        model = MODELS[key.model]
        known = {a.iri for a in model.attributes}
        refused = sorted(set(attributes) - known - {LOCATION, _DATE_OBSERVED})
        if refused:
            raise NgsiLdError("BadRequestData", f"{entity_id}: a {model.name} entity of a citylab device takes "
                                                f"only its measured attributes, location and dateObserved; "
                                                f"not {', '.join(refused)}")

    def observe(self, key: store.EntityKey, attributes: dict[str, Any], entity_id: str) -> list[str]:
        """Queue the readings of our device entity; the names of the attributes it took."""
        self.check(key, attributes, entity_id)
        model = MODELS[key.model]
        observed = attributes.get(_DATE_OBSERVED)
        default = now_s()
        if isinstance(observed, dict) and isinstance(observed.get("value"), str):
            from api.ngsild.payload import instant
            from api.ngsild.observations import _seconds

            default = _seconds(instant(observed["value"], "dateObserved"))
        readings = model_readings(model, attributes, default_time=default)
        self.add(key.org, key.device, readings, entity_id)
        return [a.attribute for a in model.attributes if a.iri in attributes]

    # context entities ------------------------------------------------------

    def link(self, attributes: dict[str, Any], entity_id: str, *, readings_from: dict[str, Any] | None = None
             ) -> None:
        """Queue the readings of a context entity linked to one of our devices
        (from `readings_from`, the instances sent, when given)."""
        for attribute in attributes.values():
            if not isinstance(attribute, dict) or attribute.get("type") != "Relationship":
                continue
            target = attribute.get("object")
            device = _device_of(target) if isinstance(target, str) else None
            if device is None or device[0] != self.org:
                continue
            if not store.known_devices(self.conn, org=device[0], devices=[device[1]]):
                continue
            readings = linked_readings(readings_from if readings_from is not None else attributes)
            if readings:
                self.add(device[0], device[1], readings, entity_id)
            return

    def add(self, org: str, device: str, readings: list[Reading], entity_id: str) -> None:
        if readings:
            self.packs.append((org, device, readings))
            self.owners.append(entity_id)

    def commit(self) -> dict[str, str]:
        """Commit the queued readings; entity id -> reason of a refused pack."""
        if not self.packs:
            return {}
        units = store.device_units(self.conn, org=self.org, devices=sorted({d for _, d, _ in self.packs}))
        _, reasons = self.door.commit(self.packs, units=units)
        return {self.owners[i]: r for i, r in enumerate(reasons) if r is not None}


def _device_of(uri: str) -> tuple[str, str] | None:
    """(org, device) of `urn:ngsi-ld:Device:<org>:<device>` or of one of our entity ids."""
    parts = uri.split(":", 4)
    if len(parts) == 5 and parts[0].lower() == "urn" and parts[1] == "ngsi-ld" and (
            parts[2] == "Device" or parts[2] in MODELS) and parts[3] and parts[4]:
        return parts[3], parts[4]
    return None


@dataclass
class _Planned:
    """One entity of a request, checked and with its readings queued; `store`
    writes it (context entities) once the readings are committed."""

    entity_id: str
    created: bool
    store: Callable[[], None] | None = None


def _plan(write: _Write, body: Any, ctx, *, mode: str) -> _Planned:
    """Check one entity for create, upsert (replace), merge (upsert with
    options=update) or update; queue its readings. Onboarding of a new device
    is committed here: the pipeline authorises readings against the registry."""
    entity_id, entity_type, attributes = normalize_entity(body, ctx)
    key = parse_entity_id(entity_id)
    if key is not None:
        if MODELS[key.model].type_iri != entity_type:
            raise NgsiLdError("BadRequestData", f"{entity_id} is a {key.model} entity; the body says type "
                                                f"{body.get('type')!r} (send the model's @context)")
        found = write.device(key, entity_id, must_exist=mode == "update")
        if found and mode == "create":
            raise NgsiLdError("AlreadyExists", f"entity {entity_id} already exists")
        write.check(key, attributes, entity_id)
        if not found:
            write.onboard(key, attributes, entity_id)
            write.known.add(key.device)
        write.observe(key, attributes, entity_id)
        write.changed(entity_id, attributes)
        return _Planned(entity_id, not found)
    current = context_entity(write.conn, org=write.org, entity_id=entity_id)
    if mode == "create" and current is not None:
        raise NgsiLdError("AlreadyExists", f"entity {entity_id} already exists")
    if mode == "update" and current is None:
        raise NgsiLdError("ResourceNotFound", f"no entity {entity_id}")
    merge = mode in ("update", "merge") and current is not None
    write.link(attributes, entity_id)
    write.changed(entity_id, attributes)

    def store() -> None:
        if mode == "create":
            try:
                insert_context_entity(write.conn, org=write.org, entity_id=entity_id, entity_type=entity_type,
                                      attributes=attributes, point=point_of(attributes, LOCATION))
            except EntityExists:
                raise NgsiLdError("AlreadyExists", f"entity {entity_id} already exists") from None
            return
        with write.conn.transaction():
            latest = context_entity(write.conn, org=write.org, entity_id=entity_id, for_update=True)
            merged = {**latest.attributes, **attributes} if merge and latest is not None else attributes
            replace_context_entity(write.conn, org=write.org, entity_id=entity_id,
                                   entity_type=latest.type if merge and latest is not None else entity_type,
                                   attributes=merged, point=point_of(merged, LOCATION))

    return _Planned(entity_id, current is None, store)


def _reject_reasons(reasons: dict[str, str]) -> None:
    if reasons:
        detail = "; ".join(f"{k}: {v}" for k, v in reasons.items())
        raise NgsiLdError("BadRequestData", f"the ingest pipeline refused the observations ({detail})")


@router.post("/entities", status_code=201, summary="Create an entity")
async def create_entity(request: Request, conn: ConnDep, principal: ProviderDep) -> Response:
    body, ctx = await read_body(request, resolver_of(request))
    if isinstance(body, list):
        raise NgsiLdError("BadRequestData", "POST /entities takes one entity; use /entityOperations/create")
    write = _Write(conn, principal, request)
    planned = _plan(write, body, ctx, mode="create")
    _reject_reasons(write.commit())
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
        return {"entityId": entity_id, "error": _problem(exc)}
    assert isinstance(exc, Problem)
    return {"entityId": entity_id, "error": {"type": "about:blank", "title": exc.title, "status": exc.status,
                                             "detail": exc.detail}}


async def _entity_batch(request: Request, conn, principal: Principal, mode: str) -> Response:
    """Check every entity, commit all their readings in one pipeline batch,
    then store the context entities whose readings were taken."""
    body, ctx = await read_body(request, resolver_of(request))
    write = _Write(conn, principal, request)
    write.prefetch([i.get("id") for i in _batch(body) if isinstance(i, dict) and isinstance(i.get("id"), str)])
    planned: list[_Planned] = []
    errors: list[dict[str, Any]] = []
    for item in _batch(body):
        entity_id = item.get("id") if isinstance(item, dict) else None
        try:
            planned.append(_plan(write, item, ctx, mode=mode))
        except (NgsiLdError, Problem) as exc:
            errors.append(_error(entity_id, exc))
    refused = write.commit()
    success, created = [], []
    for plan in planned:
        if plan.entity_id in refused:
            errors.append(_error(plan.entity_id, NgsiLdError(
                "BadRequestData", f"the ingest pipeline refused the observations: {refused[plan.entity_id]}")))
            continue
        try:
            if plan.store is not None:
                plan.store()
        except (NgsiLdError, Problem) as exc:
            errors.append(_error(plan.entity_id, exc))
            continue
        success.append(plan.entity_id)
        if plan.created:
            created.append(plan.entity_id)
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
    org = _tenant(principal, request)
    success, errors = [], []
    for entity_id in _batch(ids):
        try:
            if not isinstance(entity_id, str):
                raise NgsiLdError("BadRequestData", "a batch delete takes entity ids")
            _delete_one(conn, org, entity_id)
            success.append(entity_id)
        except NgsiLdError as exc:
            errors.append({"entityId": entity_id, "error": _problem(exc)})
    return _batch_result(success, errors)


def _delete_one(conn, org: str, entity_id: str) -> None:
    check_uri(entity_id)
    if parse_entity_id(entity_id) is not None:
        raise NgsiLdError("OperationNotSupported", f"{entity_id} is a citylab device's entity: its readings are "
                                                   "removed by erasure of the device, not through NGSI-LD")
    if not delete_context_entity(conn, org=org, entity_id=entity_id):
        raise NgsiLdError("ResourceNotFound", f"no entity {entity_id}")


# Attribute routes come before the entity routes: an entity id may contain "/".


@router.delete("/entities/{entityId:path}/attrs/{attrId}", status_code=204, summary="Delete an attribute")
def delete_attribute(entityId: str, attrId: str, conn: ConnDep, principal: ProviderDep, request: Request,
                     ctx: ContextDep) -> Response:
    check_uri(entityId)
    org = _tenant(principal, request)
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
        current = context_entity(conn, org=_tenant(principal, request), entity_id=entityId)
        if current is None or iri not in current.attributes:
            raise NgsiLdError("ResourceNotFound", f"no attribute {attrId!r} of entity {entityId}")
        fragment = {**current.attributes[iri], **fragment}
    return await _attrs(request, conn, principal, entityId, append=False, no_overwrite=False,
                        given=({iri: fragment}, ctx))


@router.delete("/entities/{entityId:path}", status_code=204, summary="Delete an entity")
def delete_entity(entityId: str, conn: ConnDep, principal: ProviderDep, request: Request) -> Response:
    _delete_one(conn, _tenant(principal, request), entityId)
    return Response(status_code=204)


async def _attrs(request: Request, conn, principal: Principal, entity_id: str, *, append: bool,
                 no_overwrite: bool, given: tuple[dict[str, Any], Any] | None = None,
                 fragment_of_entity: bool = False) -> Response:
    """Update (append=False), append or merge attributes. `given`: attributes by IRI
    already read (one attribute's update)."""
    check_uri(entity_id)
    if given is not None:
        from api.ngsild.payload import normalize_attribute

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
    write = _Write(conn, principal, request)
    key = parse_entity_id(entity_id)
    not_updated: list[dict[str, str]] = []
    # No transaction is open while the pipeline commits: it may create a day's
    # partition, which waits for every transaction that has read the readings.
    if key is not None:
        write.device(key, entity_id, must_exist=True)
        model = MODELS[key.model]
        known = {a.iri for a in model.attributes} | {_DATE_OBSERVED}
        for iri in [i for i in attributes if i not in known]:
            not_updated.append({"attributeName": ctx.compact(iri), "reason": f"not a measured attribute of {model.name}"})
            del attributes[iri]
        if attributes:
            write.observe(key, attributes, entity_id)
            write.changed(entity_id, attributes)
        _reject_reasons(write.commit())
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
        _reject_reasons(write.commit())
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


# Temporal provision ------------------------------------------------------------


def _temporal_attributes(body: dict[str, Any], ctx) -> dict[str, list[dict[str, Any]]]:
    """Attribute IRI -> its instances (each normalized)."""
    from api.ngsild.payload import normalize_attribute

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
    write = _Write(conn, principal, request)
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
        _reject_reasons(write.commit())
        write.changed(entity_id, attributes)
        write.notify()
        return not found
    current = context_entity(conn, org=write.org, entity_id=entity_id)
    if current is None and entity_type is None:
        raise NgsiLdError("ResourceNotFound", f"no entity {entity_id}")
    latest = {iri: max(instances, key=lambda i: i.get("observedAt", "")) for iri, instances in attributes.items()}
    write.link({**(current.attributes if current else {}), **latest}, entity_id, readings_from=attributes)
    _reject_reasons(write.commit())   # before the transaction: see _attrs
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
    _delete_one(conn, _tenant(principal, request), entityId)
    return Response(status_code=204)


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
    write = _Write(conn, principal, request)
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
    planned = _plan(write, body, ctx, mode="update" if current_type is None else "upsert")
    _reject_reasons(write.commit())
    if planned.store is not None:
        planned.store()
    write.notify()
    return Response(status_code=204)
