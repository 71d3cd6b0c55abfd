"""The SensorThings API 1.1 router, under /sta/v1.1 (announced on the landing page).

    GET  /sta/v1.1                      landing page: entity sets and serverSettings.conformance
    GET  /sta/v1.1/{resource path}      entity sets, entities, navigation, properties, $value, $ref
    POST /sta/v1.1/Observations         (and Datastreams(id)/Observations, CreateObservations): writes.py

The handlers only adapt HTTP to the functions of resources.py and writes.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from api.deps import ConnDep
from api.errors import Problem
from api.sensorthings.auth import StaPrincipalDep, StaWriterDep
from api.sensorthings.mapping import CONFORMANCE
from api.sensorthings.query import parse_options
from api.sensorthings.resources import read_resource
from api.sensorthings.writes import close_ingest, create
from storage.sensorthings import ENTITY_SETS, NotSupported, QueryError

__all__ = ["ROOT", "router"]

ROOT = "/sta/v1.1"

@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    close_ingest(app)


router = APIRouter(prefix=ROOT, tags=["sensorthings"], lifespan=_lifespan)


def service_root(request: Request) -> str:
    """Links start at the lab's public base URL (a setting), never at the client's Host header."""
    return request.app.state.settings.base_url + ROOT


@router.get("", summary="SensorThings landing page")
def read_landing_page(request: Request) -> dict:
    base = service_root(request)
    return {
        "value": [{"name": name, "url": f"{base}/{name}"} for name in ENTITY_SETS],
        "serverSettings": {"conformance": CONFORMANCE},
    }


def _options(request: Request):
    params = dict(request.query_params)
    try:
        return parse_options(params), params
    except NotSupported as exc:
        raise Problem(501, str(exc)) from None
    except QueryError as exc:
        raise Problem(400, str(exc)) from None


@router.get("/{path:path}", summary="SensorThings resources")
def read_resources(path: str, request: Request, conn: ConnDep, principal: StaPrincipalDep) -> Response:
    options, params = _options(request)
    base = service_root(request)
    answer = read_resource(conn, principal, base=base, path=path, options=options, url_params=params,
                           path_url=f"{base}/{path}")
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
