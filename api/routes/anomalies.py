"""GET /v1/anomalies: readings the stream detectors flagged."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import ConnDep
from api.errors import Problem
from api.models import AnomaliesPublic, AnomalyPublic
from api.params import Instant, resolve_range
from api.routes import problem_responses
from storage import queries

router = APIRouter(prefix="/anomalies", tags=["anomalies"])

MAX_ANOMALIES = 100_000
DEFAULT_ANOMALIES = 1_000


@router.get(
    "",
    response_model=AnomaliesPublic,
    summary="Anomalies in a time range",
    description="Anomalies in [start, end), oldest first, of all series or of `series_id`; higher score is "
    "more anomalous.",
    responses=problem_responses(404, 422, 503),
)
def read_anomalies(
    conn: ConnDep,
    start: Annotated[Instant | None, Query(description="Inclusive start; default end − 1 h.")] = None,
    end: Annotated[Instant | None, Query(description="Exclusive end; default now.")] = None,
    series_id: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this series.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ANOMALIES)] = DEFAULT_ANOMALIES,
) -> AnomaliesPublic:
    span = resolve_range(start, end)
    if series_id is not None and queries.get_series(conn, series_id) is None:
        raise Problem(404, f"no series with id {series_id}")
    rows = queries.read_anomalies(conn, span.start, span.end, series_id=series_id, limit=limit)
    return AnomaliesPublic(
        start=span.start,
        end=span.end,
        count=len(rows),
        truncated=len(rows) == limit,
        data=[AnomalyPublic.model_validate(r) for r in rows],
    )
