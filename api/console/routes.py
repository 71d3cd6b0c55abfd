"""The lab console's routes: the page at `/`, its built assets, and read-only data
the page needs beyond the public API (`/console/api/...`).

The page itself calls the public API for series, readings, aggregates, anomalies,
status, data products and device onboarding, with the API key the user types in
(kept in the browser's session storage only).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel

from api.console.status import StatusListener
from api.deps import ConnDep, PrincipalDep, SettingsDep
from api.models import MapPublic
from storage import console as queries

__all__ = ["STATIC_DIR", "router"]

logger = logging.getLogger("citylab.api.console")

STATIC_DIR = Path(__file__).resolve().parent / "static"
_MAX_ASSET_PATH = 1024
_MISSING = """<!doctype html><title>citylab console</title>
<p>The console's assets are not built: run <code>npm ci && npm run build</code> in <code>console/</code>.</p>"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = app.state.settings
    listener = None
    if settings.mqtt_url:
        admin = (settings.dynsec_username, settings.dynsec_password) if settings.dynsec_password else None
        listener = StatusListener(settings.mqtt_url, app.state.pool, dynsec_admin=admin)
        try:
            listener.start()
        except Exception as exc:  # noqa: BLE001 - the API serves without gateway status rather than not at all
            logger.warning("gateway status listener not started: %s", exc)
            listener = None
    app.state.status_listener = listener
    try:
        yield
    finally:
        if listener is not None:
            listener.stop()


router = APIRouter(tags=["console"], lifespan=lifespan)


class FleetDevicePublic(BaseModel):
    device: str
    org: str
    kind: str
    gateway: str | None
    area: str
    enabled: bool
    lat: float
    lon: float
    series: int
    last_seen: datetime | None
    state: str | None
    buffer_depth: int | None
    status_at: datetime | None


class FleetPublic(BaseModel):
    devices: list[FleetDevicePublic]
    map: MapPublic


@router.get("/", include_in_schema=False, response_class=HTMLResponse, response_model=None)
def read_console() -> FileResponse | HTMLResponse:
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        return HTMLResponse(_MISSING, status_code=503)
    return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/console/static/{path:path}", include_in_schema=False, response_model=None)
def read_console_asset(path: str) -> FileResponse:
    root = STATIC_DIR.resolve()
    # a name no file can have (NUL, too long) is simply not there
    if len(path) > _MAX_ASSET_PATH or "\x00" in path or any(len(part) > 255 for part in path.split("/")):
        raise HTTPException(404, "no such console asset")
    try:
        target = (root / path).resolve()
        found = target.is_relative_to(root) and target.is_file()
    except (OSError, ValueError):
        found = False
    if not found:
        raise HTTPException(404, "no such console asset")
    return FileResponse(target, headers={"Cache-Control": "public, max-age=3600"})


@router.get("/console/api/fleet", response_model=FleetPublic, summary="The fleet with health and map position")
def read_fleet(conn: ConnDep, settings: SettingsDep, principal: PrincipalDep) -> FleetPublic:
    """The devices the caller's organisation may see (its own, and those it holds a grant for),
    and the map's background: the lab's tile source, if one is set."""
    devices = queries.fleet(conn, org_id=principal.org_id, org_slug=principal.org_slug)
    return FleetPublic(devices=[FleetDevicePublic.model_validate(d, from_attributes=True) for d in devices],
                       map=MapPublic(tile_url=settings.map_tile_url, attribution=settings.map_tile_attribution))
