"""The SensorThings API 1.1 router, under /sta/v1.1 (announced on the landing page).

    GET  /sta/v1.1                      landing page: entity sets and serverSettings.conformance
    GET  /sta/v1.1/{resource path}      entity sets, entities, navigation, properties, $value, $ref
    POST /sta/v1.1/Observations         (and Datastreams(id)/Observations, CreateObservations): writes.py
    POST /sta/v1.1/Things, Datastreams  onboarding (deep insert, linking by id): onboarding.py
    PATCH, PUT, DELETE /sta/v1.1/{Things|Locations|Datastreams|Sensors}(id): updates.py
    POST /sta/v1.1/MqttCredentials      a broker login for the MQTT extension: mqtt.py
                                        (devices create Observations over MQTT: ingest.decode)

The handlers only adapt HTTP to the functions of resources.py and writes.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from api.deps import ConnDep, ReadConnDep
from api.errors import Problem
from api.sensorthings.auth import StaPrincipalDep, StaWriterDep
from api.sensorthings.mapping import CONFORMANCE, MQTT_CREATE, MQTT_RECEIVE, query_params
from api.sensorthings.mqtt import broker_url, subscriber_credentials
from api.sensorthings.onboarding import audit
from api.sensorthings.query import parse_options
from api.sensorthings.resources import read_resource
from api.sensorthings.updates import delete_entity, update_entity
from api.sensorthings.writes import create
from storage.sensorthings import ENTITY_SETS, NotSupported, QueryError, own_feature_ids, own_thing_ids, readable_series_ids

__all__ = ["ROOT", "router"]

ROOT = "/sta/v1.1"

router = APIRouter(prefix=ROOT, tags=["sensorthings"])


def service_root(request: Request) -> str:
    """Links start at the lab's public base URL (a setting), never at the client's Host header."""
    return request.app.state.settings.base_url + ROOT


@router.get("", summary="SensorThings landing page")
def read_landing_page(request: Request) -> dict:
    base = service_root(request)
    settings: dict[str, object] = {"conformance": CONFORMANCE}
    broker = broker_url(request.app.state.settings)
    if broker and request.app.state.settings.sta_mqtt_feed and getattr(request.app.state, "dynsec", None) is not None:
        settings["conformance"] = [*CONFORMANCE, MQTT_RECEIVE, MQTT_CREATE]
        settings[MQTT_RECEIVE] = settings[MQTT_CREATE] = {"endpoints": [broker]}
    return {"value": [{"name": name, "url": f"{base}/{name}"} for name in ENTITY_SETS], "serverSettings": settings}


def _options(request: Request):
    params = dict(request.query_params)
    try:
        return parse_options(params), params
    except NotSupported as exc:
        raise Problem(501, str(exc)) from None
    except QueryError as exc:
        raise Problem(400, str(exc)) from None


@router.post("/MqttCredentials", summary="A broker login to subscribe to the Observations this key may read",
             status_code=201)
def create_mqtt_credentials(request: Request, conn: ConnDep, principal: StaPrincipalDep) -> dict:
    dynsec = getattr(request.app.state, "dynsec", None)
    if dynsec is None:
        raise Problem(503, "the broker's dynamic security is not configured on this server "
                           "(CITYLAB_MQTT_URL and CITYLAB_DYNSEC_PASSWORD)")
    series = readable_series_ids(conn, query_params(principal))
    features, things = own_feature_ids(conn, principal.org_slug), own_thing_ids(conn, principal.org_slug)
    username, password, topics = subscriber_credentials(dynsec, principal.key_id, series, features, things)
    audit(conn, principal, "sta.mqtt.credentials", {"username": username, "datastreams": len(series),
                                                    "features": len(features), "things": len(things)})
    return {"url": broker_url(request.app.state.settings), "username": username, "password": password,
            "client_id": username, "topics": topics}


@router.get("/{path:path}", summary="SensorThings resources")
def read_resources(path: str, request: Request, conn: ConnDep, read: ReadConnDep,
                   principal: StaPrincipalDep) -> Response:
    options, params = _options(request)
    base = service_root(request)
    answer = read_resource(conn, principal, base=base, path=path, options=options, url_params=params,
                           path_url=f"{base}/{path}", reader=read)
    if answer.text:
        return PlainTextResponse(answer.body)
    if isinstance(answer.body, bytes):
        return Response(answer.body, media_type="application/json")
    return JSONResponse(answer.body)


@router.post("/{path:path}", summary="SensorThings creation (Observations, CreateObservations)", status_code=201)
def create_resources(path: str, request: Request, conn: ConnDep, principal: StaWriterDep,
                     body: Annotated[Any, Body()]) -> Response:
    base = service_root(request)
    return create(request.app, conn, principal, base=base, path=path, body=body)


@router.patch("/{path:path}", summary="SensorThings update of some properties")
def update_resource(path: str, request: Request, conn: ConnDep, principal: StaWriterDep,
                    body: Annotated[Any, Body()]) -> Response:
    return JSONResponse(update_entity(request.app, conn, principal, base=service_root(request), path=path,
                                      body=body, replace=False))


@router.put("/{path:path}", summary="SensorThings replacement of an entity")
def replace_resource(path: str, request: Request, conn: ConnDep, principal: StaWriterDep,
                     body: Annotated[Any, Body()]) -> Response:
    return JSONResponse(update_entity(request.app, conn, principal, base=service_root(request), path=path,
                                      body=body, replace=True))


@router.delete("/{path:path}", summary="SensorThings deletion")
def delete_resource(path: str, request: Request, conn: ConnDep, principal: StaWriterDep) -> Response:
    delete_entity(request.app, conn, principal, path=path)
    return Response(status_code=200)
