"""The FastAPI application: `create_app(settings)`.

The connection pools open in the lifespan without waiting for the database, so
the API starts (and `/health` says 503) while PostgreSQL is still coming up or
away; requests then get 503 problems until it is back. With a read replica
(`CITYLAB_DATABASE_REPLICA_URL`) a second pool reads there (api.routing).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from api import ngsild
from api.catalog import router as catalog_router
from api.console import router as console_router
from api.open import router as open_router
from api.errors import ConfigurationError, install_problem_handlers
from api.ingest_door import IngestDoor
from api.inputs import InputEdge
from api.metrics import ApiMetrics, RequestMetrics
from api.metrics import router as metrics_router
from api.routing import DatabaseRoutes
from api.routes import (
    alarms, anomalies, audit, devices, exports, gdpr, health, ingest, integrations, keys, products, series, status,
)
from api.sensorthings import router as sensorthings_router
from citylab.broker_security import DynSec
from citylab.settings import Settings

__all__ = ["create_app"]

logger = logging.getLogger("citylab.api")

DESCRIPTION = """\
The citylab reality-lab API: sensor series, raw readings, aggregates and anomaly
flags from every provider in one open, documented form.

* Times are ISO 8601 **with a timezone** (`2025-03-01T12:00:00Z`); naive times are
  refused. Ranges are half-open, `[start, end)`, and default to the last hour.
  Responses give times in UTC.
* Errors are RFC 9457 problem details (`application/problem+json`).
* Every `/v1` request carries an API key (`Authorization: Bearer <key>` or
  `X-API-Key`); the organisation and role come from the key alone. The first
  key of an organisation comes from `citylab admin create-org`. Open products
  (an open licence, no price) are readable without a key, rate-limited per
  client address; the DCAT-AP catalogue is at `/catalog`, the city page at `/open`.
* Units are SenML units (RFC 8428), stated with every series.
* Every series carries its classification (personal data, legal basis, purpose and
  controller as W3C DPV terms); a read of personal data through a grant states its
  purpose (`purpose` parameter or `Data-Purpose` header). See docs/gdpr.md.
* Every string (query parameters, JSON bodies) is refused with 422 naming the field
  when it holds a NUL byte or an unpaired surrogate; bodies larger than the
  configured limit are refused with 413; unknown fields in a body are refused.
* Links the API gives out (`Link: <...>; rel="next"`) are built from its configured
  public URL, never from the request's `Host`.
"""

TAGS = [
    {"name": "health", "description": "Liveness of the API and reachability of its database."},
    {"name": "series", "description": "Series (device, quantity), their raw readings and aggregates."},
    {"name": "anomalies", "description": "Readings flagged by the stream detectors."},
    {"name": "status", "description": "Ingest counters and freshness of the lab."},
    {"name": "organisations", "description": "Your organisation and its API keys."},
    {"name": "devices", "description": "Device onboarding: registration, MQTT credentials, disabling, rotation."},
    {"name": "exports", "description": "Streamed CSV and Parquet exports of raw readings."},
    {"name": "products", "description": "Data products, access requests, grants, usage and quality."},
    {"name": "audit", "description": "Who read what, and every administrative change."},
    {"name": "gdpr", "description": "Classification (W3C DPV), erasure, grant minimisation, access and retention "
     "reports."},
    {"name": "catalog", "description": "The DCAT-AP 3 catalogue of listed products (Turtle, JSON-LD, RDF/XML)."},
    {"name": "open data", "description": "The public city page's data: open products only, no key needed."},
]


def _version() -> str:
    try:
        return version("citylab")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0"


def create_app(settings: Settings | None = None, *, pool_timeout_s: float = 5.0, pool_max_size: int = 10) -> FastAPI:
    """Build the app. `settings.database_url` is required (the embedded default
    resolves it before calling this)."""
    settings = settings or Settings()
    if not settings.database_url:
        raise ConfigurationError(
            "the API needs a database: set CITYLAB_DATABASE_URL "
            "(e.g. postgresql://citylab:citylab@localhost:5432/citylab), or start the embedded lab with `citylab up`"
        )
    def new_pool(url: str, name: str) -> ConnectionPool:
        return ConnectionPool(
            url,
            min_size=1,
            max_size=pool_max_size,
            timeout=pool_timeout_s,
            open=False,
            name=name,
            check=ConnectionPool.check_connection,
            kwargs={"autocommit": True, "application_name": name, "connect_timeout": 10},
        )

    pool = new_pool(settings.database_url, "citylab-api")
    reader = new_pool(settings.database_replica_url, "citylab-api-reader") if settings.database_replica_url else None
    routes = DatabaseRoutes(pool, reader, max_wait_s=settings.replica_max_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for each in (pool, reader):
            if each is not None:
                each.open(wait=False)
        logger.info("API pool opened (max %d connections)%s", pool_max_size,
                    ", and a reader pool on the read replica" if reader else "")
        try:
            yield
        finally:
            app.state.ingest_door.close()
            for each in (reader, pool):
                if each is not None:
                    each.close()

    app = FastAPI(
        title="citylab",
        summary="Open access to the reality lab's sensor data.",
        description=DESCRIPTION,
        version=_version(),
        lifespan=lifespan,
        openapi_tags=TAGS,
    )
    app.state.settings = settings
    app.state.pool = pool
    app.state.routes = routes
    app.state.dynsec = (
        DynSec(settings.mqtt_url, username=settings.dynsec_username, password=settings.dynsec_password)
        if settings.mqtt_url and settings.dynsec_password else None
    )
    app.state.ingest_door = IngestDoor(settings, app.state.dynsec)   # every HTTP inlet's pipeline
    weakref.finalize(app, app.state.ingest_door.close)   # also for an app served without its lifespan
    install_problem_handlers(app)
    app.add_middleware(InputEdge, max_body_bytes=settings.api_max_body_bytes)
    app.state.metrics = ApiMetrics(health=lambda: health.component_health(app),
                                   supervised=lambda: health.supervised_components(app),
                                   reads=lambda: dict(routes.reads))
    # outermost: it counts what the input edge refuses too
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    app.include_router(health.router)
    app.include_router(metrics_router)
    app.include_router(series.router, prefix="/v1")
    app.include_router(anomalies.router, prefix="/v1")
    app.include_router(alarms.router, prefix="/v1")
    app.include_router(status.router, prefix="/v1")
    app.include_router(keys.router, prefix="/v1")
    app.include_router(devices.router, prefix="/v1")
    app.include_router(exports.router, prefix="/v1")
    app.include_router(products.router, prefix="/v1")
    app.include_router(audit.router, prefix="/v1")
    app.include_router(ingest.router, prefix="/v1")
    app.include_router(integrations.router, prefix="/v1")
    gdpr.install(app)
    app.include_router(sensorthings_router)
    app.include_router(console_router)
    ngsild.install(app)
    app.include_router(catalog_router)
    app.include_router(open_router)
    return app

