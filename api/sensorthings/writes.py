"""SensorThings writes: Observations from devices that speak STA.

    POST Observations                    {"result", "phenomenonTime", "Datastream": {"@iot.id": n}}
    POST Datastreams(n)/Observations     {"result", "phenomenonTime"}
    POST CreateObservations              the dataArray extension: one self link or "error" per row

An Observation becomes a SenML reading of its Datastream's series, published
as a pack of that device (`lab/{org}/{device}/up`) into the API's one ingest
pipeline (api.ingest_door, shared with /v1/ingest and NGSI-LD): the same
decoding, authorisation, de-duplication, dead letters and counters as MQTT,
committed before the answer. Only a provider or admin key may write, and only
to its own organisation's Datastreams; the organisation comes from the key.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from api.errors import Problem
from api.sensorthings.mapping import self_link
from api.sensorthings.onboarding import create_datastream, create_thing
from api.sensorthings.paths import PathError, parse_path
from api.sensorthings.resources import read_created
from ingest import Message
from protocol.senml import SENML_JSON, Pack, Record, decode_pack, encode_pack
from protocol.topics import thing_datastreams_topic, up_topic
from storage.sensorthings import ENTITY_SETS, datastream_target, writable_datastream
from storage.sensorthings.write import thing_of_device
from storage.tenants import Principal

__all__ = ["create"]

_OBSERVATIONS = ENTITY_SETS["Observations"]
_ROW_ERROR = "error"
STA_BOOT_ID = "sta"   # the boot id of packs written through SensorThings (seq: a hash of the content)


@dataclass(frozen=True, slots=True)
class _Reading:
    series: int
    time: float        # UTC seconds
    value: float


def _time(text: object, what: str) -> float:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be an ISO 8601 time")
    start = text.split("/")[0]
    try:
        parsed = datetime.fromisoformat(start)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{what} {text!r} needs a time zone (Z or ±hh:mm)")
    return parsed.timestamp()


def _result(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"result must be a number (observationType OM_Measurement), not {value!r}")
    return float(value)


def _datastream_id(body: dict, path_datastream: int | None) -> int:
    if path_datastream is not None:
        return path_datastream
    ref = body.get("Datastream")
    if not isinstance(ref, dict) or not isinstance(ref.get("@iot.id"), int):
        raise ValueError("an Observation needs its Datastream: {\"Datastream\": {\"@iot.id\": <id>}}")
    return ref["@iot.id"]


def _observation(body: object, path_datastream: int | None) -> _Reading:
    if not isinstance(body, dict):
        raise ValueError("an Observation is a JSON object")
    when = body.get("phenomenonTime")
    seconds = time.time() if when is None else _time(when, "phenomenonTime")
    return _Reading(_datastream_id(body, path_datastream), seconds, _result(body.get("result")))


def _commit(app: FastAPI, conn: psycopg.Connection, principal: Principal,
            readings: list[_Reading]) -> list[str | None]:
    """Ids of the stored observations (None where the pipeline refused one)."""
    by_series: dict[int, list[int]] = {}
    for i, r in enumerate(readings):
        by_series.setdefault(r.series, []).append(i)
    out: list[str | None] = [None] * len(readings)
    messages, indexes, times = [], [], []
    now_us = time.time_ns() // 1000
    for series, rows in by_series.items():
        target = writable_datastream(conn, org=principal.org_slug, series_id=series)
        if target is None:
            raise Problem(404, f"no Datastream {series} of your organisation to write to")
        device, quantity, unit = target
        records = tuple(Record(f"{device}/{quantity}", readings[i].value, readings[i].time, unit) for i in rows)
        payload = encode_pack(Pack(None, None, records), content_type=SENML_JSON)
        # A content-derived pack identity: the same Observations posted again are a duplicate.
        seq = int.from_bytes(hashlib.sha256(payload).digest()[:8], "big") >> 2
        payload = encode_pack(Pack(STA_BOOT_ID, seq, records), content_type=SENML_JSON)
        decoded = decode_pack(payload, content_type=SENML_JSON)
        times.append(np.rint(np.array([r.time for r in decoded.records]) * 1e6).astype(np.int64))
        messages.append(Message(topic=up_topic(principal.org_slug, device), payload=payload, mid=0, qos=1,
                                content_type=SENML_JSON, received_us=now_us))
        indexes.append((series, rows))
    result = app.state.ingest_door.commit(messages)
    refused = {letter.payload for letter in result.dead_letters}
    for message, (series, rows), micros in zip(messages, indexes, times):
        if message.payload in refused:
            continue
        for i, t in zip(rows, micros):
            out[i] = f"{series}-{int(t)}"
    return out


def create(app: FastAPI, conn: psycopg.Connection, principal: Principal, *, base: str, path: str,
           body: object) -> JSONResponse:
    if path.strip("/") == "CreateObservations":
        return _create_observations(app, conn, principal, base, body)
    try:
        resource = parse_path(path)
    except PathError as exc:
        raise Problem(exc.status, str(exc)) from None
    if resource.single or resource.prop or resource.ref:
        raise Problem(405, f"POST creates entities in a collection, not at {path}")
    name = resource.entity.name
    if name == "Things" and len(resource.steps) == 1:
        return _created(conn, principal, base, "Things", create_thing(conn, principal, body))
    if name == "Datastreams" and (len(resource.steps) == 1 or resource.steps[0].entity == "Things"):
        thing = resource.steps[0].key if len(resource.steps) == 2 else None
        series = create_datastream(conn, principal, body, thing)
        device = datastream_target(conn, series)[1]
        dynsec = getattr(app.state, "dynsec", None)
        if dynsec is not None:   # the device's login may create its Observations over MQTT
            dynsec.allow_datastreams(principal.org_slug, device, [series])
        created = _created(conn, principal, base, "Datastreams", series)
        app.state.ingest_door.publish(thing_datastreams_topic(thing_of_device(conn, org=principal.org_slug, device=device)),
                             json.loads(created.body))
        return created
    if name != "Observations":
        raise Problem(501, f"creating {name} is not supported by this server: Things (with their Locations and "
                           "Datastreams) and Datastreams are onboarded here or at POST /v1/devices; Sensors, "
                           "ObservedProperties, Locations and FeaturesOfInterest follow from them")
    path_datastream = None
    if len(resource.steps) == 2 and resource.steps[0].entity == "Datastreams":
        if not isinstance(resource.steps[0].key, int):
            raise Problem(400, "Datastreams(id)/Observations needs a Datastream id")
        path_datastream = resource.steps[0].key
    elif len(resource.steps) != 1:
        raise Problem(501, "Observations are created at Observations or Datastreams(id)/Observations")
    try:
        reading = _observation(body, path_datastream)
    except ValueError as exc:
        raise Problem(400, str(exc)) from None
    [stored] = _commit(app, conn, principal, [reading])
    if stored is None:
        raise Problem(422, "the ingest pipeline refused the Observation; it is in the dead letters with its reason")
    return _created(conn, principal, base, "Observations", stored)


def _created(conn: psycopg.Connection, principal: Principal, base: str, entity_set: str,
             key: object) -> JSONResponse:
    """201 with the new entity's Location and the entity itself, as FROST answers."""
    link = self_link(base, ENTITY_SETS[entity_set], key)
    body = read_created(conn, principal, base=base, entity_set=entity_set, key=key)
    return JSONResponse(body, status_code=201, headers={"Location": link})


def _create_observations(app: FastAPI, conn: psycopg.Connection, principal: Principal, base: str,
                         body: object) -> JSONResponse:
    if not isinstance(body, list):
        raise Problem(400, "CreateObservations takes a JSON array of {Datastream, components, dataArray}")
    readings: list[_Reading | None] = []
    for group in body:
        if not isinstance(group, dict) or not isinstance(group.get("components"), list) \
                or not isinstance(group.get("dataArray"), list):
            raise Problem(400, "each CreateObservations item needs Datastream, components and dataArray")
        try:
            series = _datastream_id(group, None)
        except ValueError as exc:
            raise Problem(400, str(exc)) from None
        components = group["components"]
        if "result" not in components:
            raise Problem(400, "components must name result")
        for row in group["dataArray"]:
            try:
                if not isinstance(row, list) or len(row) != len(components):
                    raise ValueError("row length differs from components")
                values = dict(zip(components, row))
                when = values.get("phenomenonTime")
                seconds = time.time() if when is None else _time(when, "phenomenonTime")
                readings.append(_Reading(series, seconds, _result(values["result"])))
            except ValueError:
                readings.append(None)
    valid = [r for r in readings if r is not None]
    stored = iter(_commit(app, conn, principal, valid) if valid else [])
    links = []
    for reading in readings:
        found = next(stored) if reading is not None else None
        links.append(self_link(base, _OBSERVATIONS, found) if found is not None else _ROW_ERROR)
    return JSONResponse(links, status_code=201)
