"""The writes of one NGSI-LD request: entities checked, observations queued and
committed through the ingest pipeline in one batch, context entities stored
after that, and their changes recorded for the notifier.

An entity with one of our device ids is an observation of the device (its
measured attributes become readings; an unknown device is onboarded first,
committed, since the pipeline authorises readings against the registry). Any
other entity is a context entity of the writer's organisation. No transaction
is open while the pipeline commits: it may create a day's partition, which
waits for every transaction that has read the readings.
"""


from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from api.deps import actor
from api.errors import Problem
from api.ngsild.entities import LOCATION, NativeEntity, check_uri, context_native, parse_entity_id
from api.ngsild.errors import NgsiLdError
from api.ngsild.observations import Reading, commit_readings, linked_readings, model_readings, now_s, \
    quantity_of, seconds_of
from api.ngsild.payload import instant, normalize_entity, point_of
from api.ngsild.request import vocabulary
from api.ngsild.vocabulary import MODELS
from storage import deletion, tenants
from storage import ngsild as store
from storage.audit import record_change
from storage.ngsild.context import EntityExists, context_entity, delete_context_entity, insert_context_entity, \
    replace_context_entity
from storage.tenants import Principal

__all__ = ["DATE_OBSERVED", "Planned", "Write", "delete_one", "device_of", "linked_device", "plan", "problem_of", "reject_refused", "tenant_of"]

DEVICE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
DATE_OBSERVED = "https://smartdatamodels.org/dateObserved"


def tenant_of(principal: Principal, request: Request) -> str:
    tenant = request.headers.get("ngsild-tenant")
    if tenant is not None and tenant != principal.org_slug:
        raise NgsiLdError("NonexistentTenant", f"no tenant {tenant!r} your API key may write to")
    return principal.org_slug


def problem_of(exc: NgsiLdError) -> dict[str, Any]:
    return {"type": f"https://uri.etsi.org/ngsi-ld/errors/{exc.kind}", "title": exc.title, "status": exc.status,
            "detail": exc.detail}


class Write:
    """One request's writes: readings gathered per device, committed together."""

    def __init__(self, conn, principal: Principal, request: Request) -> None:
        self.conn = conn
        self.principal = principal
        self.org = tenant_of(principal, request)
        self.door = request.app.state.ingest_door
        self.packs: list[tuple[str, str, list[Reading]]] = []
        self.owners: list[str] = []      # entity id of each pack
        self.notifier = request.app.state.ngsild_notifier
        self.changes: dict[str, set[str]] = {}   # entity id -> attribute IRIs written
        self.known: set[str] = set()     # devices of the batch that are registered
        self.checked: set[str] = set()   # devices of the batch looked up

    def changed(self, entity_id: str, iris) -> None:
        self.changes.setdefault(entity_id, set()).update(iris)

    def notify(self, *, only: list[str] | None = None) -> None:
        """After the commit: record the context entities' changes for the notifier (it never
        blocks the answer). The readings of device entities were recorded by the ingest
        pipeline in the transaction that committed them."""
        changes = [(e, a) for e, a in self.changes.items()
                   if (only is None or e in only) and parse_entity_id(e) is None]
        self.notifier.changed(self.conn, self.org, changes)

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
        """Register the device as `POST /v1/devices` does; its series are created by
        the pipeline with the units its readings carry."""
        if not re.match(DEVICE_NAME, key.device):
            raise NgsiLdError("BadRequestData", f"{entity_id}: device name {key.device!r} must match {DEVICE_NAME}")
        point = point_of(attributes, LOCATION)
        try:
            tenants.onboard_device(self.conn, org=key.org, device=key.device, gateway=None, kind="sensor",
                                   lat=point[1] if point else None, lon=point[0] if point else None,
                                   dev_eui=None, lora_channels=None, sensors=[])
        except tenants.DeviceConflict:
            raise NgsiLdError("AlreadyExists", f"{entity_id}: the device name {key.device!r} is taken") from None

    def check(self, key: store.EntityKey, attributes: dict[str, Any], entity_id: str) -> None:
        """Refuse what our device entity cannot take: nothing is silently dropped."""
        model = MODELS[key.model]
        known = {a.iri for a in model.attributes}
        refused = sorted(set(attributes) - known - {LOCATION, DATE_OBSERVED})
        if refused:
            raise NgsiLdError("BadRequestData", f"{entity_id}: a {model.name} entity of a citylab device takes "
                                                f"only its measured attributes, location and dateObserved; "
                                                f"not {', '.join(refused)}")

    def observe(self, key: store.EntityKey, attributes: dict[str, Any], entity_id: str) -> list[str]:
        """Queue the readings of our device entity; the names of the attributes it took."""
        self.check(key, attributes, entity_id)
        model = MODELS[key.model]
        observed = attributes.get(DATE_OBSERVED)
        default = now_s()
        if isinstance(observed, dict) and isinstance(observed.get("value"), str):
            default = seconds_of(instant(observed["value"], "dateObserved"))
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
            device = device_of(target) if isinstance(target, str) else None
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
        reasons = commit_readings(self.door, self.packs, units=units)
        return {self.owners[i]: r for i, r in enumerate(reasons) if r is not None}


def device_of(uri: str) -> tuple[str, str] | None:
    """(org, device) of `urn:ngsi-ld:Device:<org>:<device>` or of one of our entity ids."""
    parts = uri.split(":", 4)
    if len(parts) == 5 and parts[0].lower() == "urn" and parts[1] == "ngsi-ld" and (
            parts[2] == "Device" or parts[2] in MODELS) and parts[3] and parts[4]:
        return parts[3], parts[4]
    return None


def linked_device(native: NativeEntity, org: str) -> str | None:
    """The device of `org` a context entity is linked to by a Relationship (the first one), if any."""
    for attribute in native.attributes.values():
        target = attribute.get("object") if attribute.get("type") == "Relationship" else None
        device = device_of(target) if isinstance(target, str) else None
        if device is not None and device[0] == org:
            return device[1]
    return None


@dataclass
class Planned:
    """One entity of a request, checked and with its readings queued; `store`
    writes it (context entities) once the readings are committed."""

    entity_id: str
    created: bool
    store: Callable[[], None] | None = None


def plan(write: Write, body: Any, ctx, *, mode: str) -> Planned:
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
        return Planned(entity_id, not found)
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

    return Planned(entity_id, current is None, store)


def reject_refused(reasons: dict[str, str]) -> None:
    if reasons:
        detail = "; ".join(f"{k}: {v}" for k, v in reasons.items())
        raise NgsiLdError("BadRequestData", f"the ingest pipeline refused the observations ({detail})")


def delete_one(conn, principal: Principal, org: str, entity_id: str) -> None:
    """Delete an entity and its history through the deletion machinery of erasure
    (`storage.deletion.delete_series`, which erases through `storage.gdpr.erase` with its
    receipt and audit row): a device entity's series (the device stays registered, with
    the series of its other models), or a context entity, with the series its attributes
    fed when it is linked to one of `org`'s devices."""
    check_uri(entity_id)
    key = parse_entity_id(entity_id)
    if key is not None:
        if key.org != org:
            raise NgsiLdError("ResourceNotFound", f"no entity {entity_id} of organisation {org!r}")
        ids = [s.series_id for s in store.series_of_entity(conn, org_id=principal.org_id, org_slug=org,
                                                           vocabulary=vocabulary(), key=key)]
        if not ids:
            raise NgsiLdError("ResourceNotFound", f"no entity {entity_id}")
        _delete_series(conn, principal, org, ids, entity_id)
        return
    current = context_entity(conn, org=org, entity_id=entity_id)
    if current is None:
        raise NgsiLdError("ResourceNotFound", f"no entity {entity_id}")
    linked = linked_device(context_native(current), org)
    if linked is not None:
        series = store.device_series(conn, org=org, device=linked)
        fed = {series[q[0]] for q in map(quantity_of, current.attributes) if q is not None and q[0] in series}
        if fed:
            _delete_series(conn, principal, org, sorted(fed), entity_id)
    delete_context_entity(conn, org=org, entity_id=entity_id)


def _delete_series(conn, principal: Principal, org: str, ids: list[int], entity_id: str) -> None:
    try:
        deleted = deletion.delete_series(conn, org=org, series_ids=ids, actor=actor(principal),
                                         org_id=principal.org_id, key_id=principal.key_id)
    except deletion.InUse as exc:
        raise NgsiLdError("OperationNotSupported", f"{entity_id}: {exc}") from None
    record_change(conn, actor=actor(principal), action="ngsild.entity.delete", org_id=principal.org_id,
                  key_id=principal.key_id, owner_org=principal.org_id,
                  detail={"entity": entity_id, "series": list(deleted.series), "readings": deleted.readings})
