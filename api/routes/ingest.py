"""HTTP ingest for devices that cannot speak MQTT, through the same pipeline as MQTT.

    POST /v1/ingest                       a SenML pack (JSON or CBOR by Content-Type), or a raw
                                          Cayenne LPP frame (application/octet-stream, ?port=1..223)
    POST /v1/ingest/tokens                a device token (provider key), shown once
    PUT  /v1/devices/{device}/senml       how an unmodified SenML device names its records

`POST /v1/ingest` authenticates with a device token (`Authorization: Bearer cld_...`) or
with the device's own broker login over HTTP Basic (`<org>.<device>` and its MQTT
password, checked against the verifier citylab keeps, storage.device_tokens): the
organisation and the device come from the credential alone, as on the broker.
The pack becomes one message on the device's own topic (`lab/{org}/{device}/up`,
`.../lpp/{port}`) and is committed by `ingest.Pipeline` with the same validation,
de-duplication (bid/seq, else the content-derived identity), dead letters and
counters as a pack that came over MQTT. The answer comes after the commit: 201 with
what was stored, 200 for a pack stored before (a retry), or a problem document
carrying the dead letter's `reason`.

The API process's one pipeline (`api.ingest_door`, shared with the SensorThings and
NGSI-LD inlets; commits serialised): its anomaly detectors learn from every HTTP
inlet's packs; aggregates and rows are shared in the database like those of several
ingest workers. With the SensorThings MQTT feed on, the stored readings reach
SensorThings MQTT subscribers like those of any inlet.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import ConnDep, ProviderDep, actor
from api.errors import Problem, problem_response
from api.routes import problem_responses
from ingest.message import Message
from protocol.senml import SENML_CBOR, SENML_JSON
from protocol.topics import lpp_topic, up_topic
from storage import tenants
from storage.audit import record_change
from storage.device_tokens import device_of_login, device_of_token, issue_device_token
from storage.registry import set_senml_names

router = APIRouter(tags=["ingest"])

MAX_BODY_BYTES = 1 << 20
LPP = "application/octet-stream"
_DEVICE_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_QUANTITY = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"

# dead-letter reasons a device can fix by its own payload: 422; the others: 403
_FORBIDDEN = {"unknown_device", "device_disabled", "not_behind_gateway"}


class IngestPublic(BaseModel):
    org: str
    device: str
    packs_stored: int = Field(description="1 when this request stored the pack, 0 for a pack stored before.")
    readings_stored: int
    duplicate: bool


class TokenCreate(BaseModel):
    device: str = Field(pattern=_DEVICE_ID)


class TokenPublic(BaseModel):
    org: str
    device: str
    token: str = Field(description="Shown this once: `Authorization: Bearer <token>` on POST /v1/ingest.")


class SenMLNamesUpdate(BaseModel):
    base_name: str | None = Field(default=None, min_length=1, max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$",
                                  examples=["urn:dev:ow:10e2073a01080063"],
                                  description="The exact SenML base name the device uses (RFC 8428 4.5.1).")
    names: dict[str, Annotated[str, Field(pattern=_QUANTITY)]] = Field(
        default_factory=dict, max_length=256, examples=[{"temp": "temperature", "": "humidity"}],
        description="Record name (after the base name; '' for the base name itself) -> quantity. "
                    "Without base_name: exact resolved names -> quantity.")


class SenMLNamesPublic(SenMLNamesUpdate):
    device: str


def _device_of(conn, authorization: str) -> tuple[str, str] | None:
    """(org, device) a device token or a device's broker login names, else None."""
    scheme, _, credentials = authorization.partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == "bearer":
        return device_of_token(conn, credentials)
    if scheme == "basic":
        try:
            username, colon, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return device_of_login(conn, username, password) if colon else None
    return None


@router.post("/ingest", status_code=201, response_model=IngestPublic,
             responses={200: {"model": IngestPublic, "description": "A pack stored before (a retry): nothing new"},
                        **problem_responses(401, 403, 413, 415, 422, 503)},
             summary="Store one SenML pack or LPP frame of the device the token (or broker login) names, "
                     "answering after the commit")
async def create_ingest(request: Request, conn: ConnDep,
                        port: Annotated[int | None, Query(ge=1, le=223, description="LPP port")] = None):
    found = _device_of(conn, request.headers.get("authorization", ""))
    if found is None:
        return problem_response(401, "a device token (Authorization: Bearer cld_...) or the device's broker login "
                                     "(HTTP Basic) is required",
                                headers={"WWW-Authenticate": 'Bearer, Basic realm="citylab"'})
    org, device = found
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise Problem(413, f"a pack may have at most {MAX_BODY_BYTES} bytes")
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media in (SENML_JSON, SENML_CBOR):
        topic, content_type = up_topic(org, device), media
    elif media == LPP:
        if port is None:
            raise Problem(422, "a Cayenne LPP frame needs its port: ?port=1..223")
        topic, content_type = lpp_topic(org, device, port), None
    else:
        raise Problem(415, f"Content-Type must be {SENML_JSON}, {SENML_CBOR} or {LPP} (LPP, with ?port=)")
    message = Message(topic=topic, payload=body, mid=0, qos=1, content_type=content_type,
                      received_us=time.time_ns() // 1000)
    result = await run_in_threadpool(request.app.state.ingest_door.commit, [message])
    if result.dead_letters:
        letter = result.dead_letters[0]
        return problem_response(403 if letter.reason in _FORBIDDEN else 422, letter.detail,
                                title="Pack refused", reason=letter.reason)
    duplicate = result.packs_duplicate > 0
    return JSONResponse(status_code=200 if duplicate else 201, content=IngestPublic(
        org=org, device=device, packs_stored=result.packs_stored, readings_stored=result.readings_stored,
        duplicate=duplicate).model_dump())


@router.post("/ingest/tokens", status_code=201, response_model=TokenPublic,
             responses=problem_responses(401, 403, 404, 422),
             summary="Issue a device token for HTTP ingest (shown once)")
def create_ingest_token(body: TokenCreate, conn: ConnDep, principal: ProviderDep) -> TokenPublic:
    if tenants.device_of_org(conn, org=principal.org_slug, device=body.device) is None:
        raise Problem(404, f"your organisation has no device {body.device!r}")
    with conn.transaction():
        token = issue_device_token(conn, org=principal.org_slug, device=body.device)
        record_change(conn, actor=actor(principal), action="device.token", org_id=principal.org_id,
                      key_id=principal.key_id, owner_org=principal.org_id, detail={"device": body.device})
    return TokenPublic(org=principal.org_slug, device=body.device, token=token)


@router.put("/devices/{device}/senml", response_model=SenMLNamesPublic,
            responses=problem_responses(401, 403, 404, 422),
            summary="Declare how an unmodified SenML device names its records")
def update_senml_names(device: Annotated[str, Path(pattern=_DEVICE_ID)], body: SenMLNamesUpdate,
                       conn: ConnDep, principal: ProviderDep) -> SenMLNamesPublic:
    if tenants.device_of_org(conn, org=principal.org_slug, device=device) is None:
        raise Problem(404, f"your organisation has no device {device!r}")
    with conn.transaction():
        set_senml_names(conn, device, org=principal.org_slug, base_name=body.base_name, names=body.names)
        record_change(conn, actor=actor(principal), action="device.senml_names", org_id=principal.org_id,
                      key_id=principal.key_id, owner_org=principal.org_id,
                      detail={"device": device, "base_name": body.base_name})
    return SenMLNamesPublic(device=device, base_name=body.base_name, names=body.names)
