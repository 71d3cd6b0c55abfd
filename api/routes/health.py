"""GET /health: is each part of the lab up?

The database is probed through the API's pool, the read replica (when
`CITYLAB_DATABASE_REPLICA_URL` is set) through its reader pool, with its lag behind
the primary; a replica down leaves the API healthy (its reads go to the primary) and is
shown as such. The broker (when `CITYLAB_MQTT_URL` is
set) with an MQTT CONNECT; ingest (when `CITYLAB_INGEST_METRICS_URL` is set) through its
metrics endpoint, which also gives its lag. Under `citylab up` the supervisor's state
file adds the restarts of every component it runs. One component down: 503.
"""

from __future__ import annotations

import logging

import psycopg
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import ConnectionPool

from api.models import HealthPublic
from citylab.probes import ComponentHealth, add_supervised, healthy, probe_broker, probe_ingest
from citylab.settings import Settings
from citylab.supervisor import STATE_FILE, read_snapshot
from storage.errors import StorageError, map_errors
from storage.queries import ping

__all__ = ["component_health", "router", "supervised_components"]

router = APIRouter(tags=["health"])
logger = logging.getLogger("citylab.api")

HEALTH_TIMEOUT_S = 2.0



def _probe_database(pool: ConnectionPool) -> ComponentHealth:
    try:
        with map_errors("health check"), pool.connection(timeout=HEALTH_TIMEOUT_S) as conn:
            ping(conn)
    except StorageError as exc:
        # After a restart of the server the pool reconnects with backoff; the server itself decides.
        if _answers_directly(pool):
            logger.warning("health: the API's pool is still reconnecting: %s", exc)
            return ComponentHealth("database", True, "answers; the API's connections are being re-established")
        logger.warning("health: %s", exc)
        return ComponentHealth("database", False, "the database does not answer")
    return ComponentHealth("database", True)


def _answers_directly(pool: ConnectionPool) -> bool:
    """Does the server answer a connection of its own, outside the pool?"""
    kwargs = {**(pool.kwargs or {}), "connect_timeout": int(HEALTH_TIMEOUT_S), "autocommit": True}
    try:
        with psycopg.connect(pool.conninfo, **kwargs) as conn:
            ping(conn)
    except (psycopg.Error, StorageError):
        return False
    return True


def component_health(app: FastAPI) -> list[ComponentHealth]:
    settings: Settings = app.state.settings
    found = [_probe_database(app.state.pool)]
    replica = app.state.routes.replica_health(timeout=HEALTH_TIMEOUT_S)
    if replica is not None:
        found.append(replica)
    if settings.mqtt_url:
        found.append(probe_broker(settings.mqtt_url, timeout=HEALTH_TIMEOUT_S))
    found += [probe_ingest(url, timeout=HEALTH_TIMEOUT_S, name=name)
              for name, url in settings.ingest_metrics_urls.items()]
    for health in found:
        if not health.up:
            logger.warning("health: %s is down: %s", health.name, health.detail)
    return found


def supervised_components(app: FastAPI) -> dict[str, dict] | None:
    """What `citylab up`'s supervisor last wrote (None when the API does not run under it)."""
    settings: Settings = app.state.settings
    return read_snapshot(settings.home.resolve() / STATE_FILE)


@router.get(
    "/health",
    response_model=HealthPublic,
    summary="Health of every component",
    description="200 when every component answers (`status` ok); 503 (same body shape, `status` degraded) "
                "when one does not. `components` has the database, the broker and ingest (with its lag in "
                "seconds) as far as the API is configured to see them, and under `citylab up` each "
                "supervised process with its restart count.",
    responses={503: {"model": HealthPublic, "description": "A component is down."}},
)
def read_health(request: Request) -> HealthPublic | JSONResponse:
    probed = component_health(request.app)
    components = add_supervised({h.name: h.public() for h in probed}, supervised_components(request.app))
    up = healthy(components)
    database = components["database"]["up"]
    body = HealthPublic(status="ok" if up else "degraded", database="ok" if database else "unavailable",
                        components=components)
    if not up:
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})
    return body
