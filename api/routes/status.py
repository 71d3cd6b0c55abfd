"""GET /v1/status: ingest counters and how fresh the newest reading is."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from fastapi import APIRouter

from api.deps import ConnDep, PrincipalDep
from api.models import StatusPublic
from api.routes import problem_responses
from storage import queries

router = APIRouter(prefix="/status", tags=["status"])


@router.get(
    "",
    response_model=StatusPublic,
    summary="Lab status",
    description="Ingest counters (packs received = stored + dead-lettered), dead letters, devices, series, "
    "the newest reading and the lag behind it.",
    responses=problem_responses(401, 503),
)
def read_status(conn: ConnDep, principal: PrincipalDep) -> StatusPublic:
    status = queries.lab_status(conn)
    newest = status.newest_reading
    lag = (datetime.now(UTC) - newest).total_seconds() if newest else None
    return StatusPublic(**asdict(status), lag_seconds=lag)
