"""LoRaWAN network-server integrations of an organisation (provider key).

    POST /v1/integrations                  connect a network server (tts | chirpstack): a broker login
                                           it publishes with, or (tts with `server`) ingest subscribes
                                           to The Things Stack's own MQTT server with its API key
    GET  /v1/integrations                  your organisation's integrations (never a password or key)
    POST /v1/integrations/{id}/disable     ingest stops taking its uplinks; its broker login is disabled
    POST /v1/integrations/{id}/enable
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from api.deps import ConnDep, ProviderDep, SettingsDep, actor, get_dynsec
from api.errors import Problem
from api.routes import problem_responses
from citylab.integrations import ServerAddress, connect_integration, enable_integration
from storage.audit import record_change
from storage.integrations import Integration, IntegrationConflict, integration_filter, list_integrations

router = APIRouter(prefix="/integrations", tags=["integrations"])

_APP_ID = r"^[a-z0-9](?:[-]?[a-z0-9]){1,35}$|^[0-9a-fA-F-]{1,64}$"  # TTS application ids; ChirpStack UUIDs


class IntegrationServer(BaseModel):
    url: str = Field(pattern=r"^mqtts?://[A-Za-z0-9.-]+(:\d{1,5})?/?$", max_length=256,
                     examples=["mqtts://eu1.cloud.thethings.network:8883"],
                     description="The Things Stack MQTT server (Console: Integrations > MQTT).")
    username: str = Field(min_length=1, max_length=128, examples=["city-air@ttn"],
                          description="Its username: `{application id}@{tenant id}`.")
    api_key: str = Field(min_length=1, max_length=512, description="An API key of the application that may read "
                                                                   "its traffic. Stored; never returned.")


class IntegrationCreate(BaseModel):
    kind: Literal["tts", "chirpstack"]
    application_id: str = Field(pattern=_APP_ID, examples=["city-air"],
                                description="The Things Stack application id, or the ChirpStack application's id.")
    tenant_id: str = Field(default="", pattern=r"^$|^[a-z0-9](?:[-]?[a-z0-9]){1,35}$",
                           description="The Things Stack tenant id ('' on The Things Network's Open Source).")
    server: IntegrationServer | None = Field(
        default=None, description="The Things Stack only: ingest connects to this MQTT server and subscribes to the "
                                  "application's uplink and location topics, instead of a broker login for it.")


class IntegrationMqtt(BaseModel):
    url: str
    username: str
    password: str = Field(description="Shown this once.")
    client_id: str


class IntegrationPublic(BaseModel):
    id: int
    kind: str
    application_id: str
    tenant_id: str
    mode: Literal["publish", "subscribe"] = Field(
        description="publish: the network server publishes on citylab's broker; subscribe: ingest subscribes "
                    "to the network server's MQTT server.")
    topic: str = Field(description="The uplink topics of the integration.")
    server_url: str | None = None
    server_username: str | None = None
    enabled: bool


class IntegrationCreated(IntegrationPublic):
    mqtt: IntegrationMqtt | None = Field(default=None, description="publish mode: the broker login, shown once.")


def _public(found: Integration) -> IntegrationPublic:
    return IntegrationPublic(id=found.id, kind=found.kind, application_id=found.application_id,
                             tenant_id=found.tenant_id, enabled=found.enabled, mode=found.mode,
                             server_url=found.server_url, server_username=found.server_username,
                             topic=integration_filter(found.kind, found.application_id, found.tenant_id))


@router.post("", status_code=201, response_model=IntegrationCreated, response_model_exclude_none=True,
             responses=problem_responses(401, 403, 409, 422, 503),
             summary="Connect a LoRaWAN network server's MQTT integration; a broker login is shown once")
def create_integration(body: IntegrationCreate, request: Request, conn: ConnDep, principal: ProviderDep,
                       settings: SettingsDep) -> IntegrationCreated:
    """A broker login may publish on the integration's uplink topics only and is bound to its client id;
    or ingest subscribes to The Things Stack's MQTT server. Uplinks are stored for the organisation's
    own DevEUIs only."""
    server = None if body.server is None else ServerAddress(body.server.url.rstrip("/"), body.server.username,
                                                           body.server.api_key)
    dynsec = get_dynsec(request) if server is None else None
    try:
        made = connect_integration(conn, dynsec, org=principal.org_slug, kind=body.kind,
                                   application_id=body.application_id, tenant_id=body.tenant_id, subscribe_to=server)
    except IntegrationConflict as exc:
        raise Problem(409, str(exc)) from None
    except ValueError as exc:
        raise Problem(422, str(exc)) from None
    found = made.integration
    record_change(conn, actor=actor(principal), action="integration.create", org_id=principal.org_id,
                  key_id=principal.key_id, owner_org=principal.org_id,
                  detail={"integration": found.id, "kind": found.kind, "application_id": found.application_id,
                          "mode": found.mode})
    mqtt = None
    if made.username is not None:
        mqtt = IntegrationMqtt(url=_public_broker_url(settings.mqtt_public_url or settings.mqtt_url
                                                      or "mqtt://localhost:1883"),
                               username=made.username, password=made.password, client_id=made.client_id)
    return IntegrationCreated(**_public(found).model_dump(), mqtt=mqtt)


def _public_broker_url(url: str) -> str:
    """The broker's address without any credentials in it."""
    parts = urlsplit(url)
    netloc = (parts.hostname or "localhost") + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


@router.get("", response_model=list[IntegrationPublic], response_model_exclude_none=True,
            responses=problem_responses(401, 403), summary="Your organisation's LoRaWAN integrations")
def read_integrations(conn: ConnDep, principal: ProviderDep) -> list[IntegrationPublic]:
    return [_public(i) for i in list_integrations(conn, org=principal.org_slug)]


def _set_enabled(request: Request, conn, principal, integration_id: int, *, enabled: bool) -> IntegrationPublic:
    found = enable_integration(conn, request.app.state.dynsec, integration_id, org=principal.org_slug,
                               enabled=enabled)
    if found is None:
        raise Problem(404, f"your organisation has no integration {integration_id}")
    record_change(conn, actor=actor(principal), action=f"integration.{'enable' if enabled else 'disable'}",
                  org_id=principal.org_id, key_id=principal.key_id, owner_org=principal.org_id,
                  detail={"integration": found.id})
    return _public(found)


IntegrationId = Annotated[int, Path(ge=1, description="The integration's id.")]


@router.post("/{integration_id}/disable", response_model=IntegrationPublic, response_model_exclude_none=True,
             responses=problem_responses(401, 403, 404, 422, 503),
             summary="Disable an integration: ingest stops taking its uplinks within seconds")
def disable_integration(integration_id: IntegrationId, request: Request, conn: ConnDep,
                        principal: ProviderDep) -> IntegrationPublic:
    """Its broker login is disabled too; ingest drops its connection to a subscribed server."""
    return _set_enabled(request, conn, principal, integration_id, enabled=False)


@router.post("/{integration_id}/enable", response_model=IntegrationPublic, response_model_exclude_none=True,
             responses=problem_responses(401, 403, 404, 422, 503), summary="Enable an integration again")
def enable_integration_again(integration_id: IntegrationId, request: Request, conn: ConnDep,
                             principal: ProviderDep) -> IntegrationPublic:
    return _set_enabled(request, conn, principal, integration_id, enabled=True)
