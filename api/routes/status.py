"""GET /v1/status: ingest counters and how fresh the newest reading is.

Each organisation sees its own: its packs, dead letters, devices, series and
newest reading. The lab-wide figures (`scope=lab`) are for the lab's operators.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.deps import ConnDep, PrincipalDep, require_operator
from api.models import StatusPublic
from api.routes import problem_responses
from storage import queries

router = APIRouter(prefix="/status", tags=["status"])


@router.get(
    "",
    response_model=StatusPublic,
    summary="Status of your organisation's data (or of the lab)",
    description="Ingest counters of your organisation's devices (packs received = stored + dead-lettered), its "
    "dead letters, devices, series, the newest reading and the lag behind it. `scope=lab`: the same for the "
    "whole lab, for keys with role `operator` only (403 otherwise).",
    responses=problem_responses(401, 403, 422, 503),
)
def read_status(
    conn: ConnDep, principal: PrincipalDep,
    scope: Annotated[Literal["organisation", "lab"], Query(description="organisation (default) or lab.")]
    = "organisation",
) -> StatusPublic:
    if scope == "lab":
        require_operator(principal)
        status = queries.lab_status(conn)
    else:
        status = queries.org_status(conn, principal.org_slug)
    newest = status.newest_reading
    lag = (datetime.now(UTC) - newest).total_seconds() if newest else None
    return StatusPublic(**asdict(status), lag_seconds=lag, scope=scope,
                        org=principal.org_slug if scope == "organisation" else None)
