"""GET /health: is the API up, and can it reach its database?"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import PoolDep
from api.models import HealthPublic
from storage.errors import StorageError, map_errors
from storage.queries import ping

router = APIRouter(tags=["health"])
logger = logging.getLogger("citylab.api")

HEALTH_TIMEOUT_S = 2.0


@router.get(
    "/health",
    response_model=HealthPublic,
    summary="Liveness and database reachability",
    description="200 when the database answers; 503 (same body shape) when it does not.",
    responses={503: {"model": HealthPublic, "description": "The database is unreachable."}},
)
def read_health(pool: PoolDep) -> HealthPublic | JSONResponse:
    try:
        with map_errors("health check"), pool.connection(timeout=HEALTH_TIMEOUT_S) as conn:
            ping(conn)
    except StorageError as exc:
        logger.warning("health: %s", exc)
        body = HealthPublic(status="ok", database="unavailable")
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})
    return HealthPublic(status="ok", database="ok")
