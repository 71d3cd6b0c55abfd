"""GET /v1/anomalies: readings the stream detectors flagged."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.access import account, readable, series_or_404
from api.privacy import purpose_refusals
from api.deps import ConnDep, ReadConnDep, PrincipalDep
from api.models import AnomaliesPublic, AnomalyPublic
from api.params import Instant, resolve_range
from api.routes import problem_responses
from api.tabular import Format, table_response
from storage import queries
from storage.audit import DataRead

router = APIRouter(prefix="/anomalies", tags=["anomalies"])

MAX_ANOMALIES = 100_000
DEFAULT_ANOMALIES = 1_000


@router.get(
    "",
    response_model=AnomaliesPublic,
    summary="Anomalies in a time range",
    description="Anomalies in [start, end), oldest first, of every series your organisation may read or of "
    "`series_id`; higher score is more anomalous. JSON, CSV or Parquet.",
    responses={**problem_responses(401, 404, 422, 503),
               200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}},
)
def read_anomalies(
    conn: ConnDep,
    read: ReadConnDep,
    principal: PrincipalDep,
    start: Annotated[Instant | None, Query(description="Inclusive start; default end − 1 h.")] = None,
    end: Annotated[Instant | None, Query(description="Exclusive end; default now.")] = None,
    series_id: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this series.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ANOMALIES)] = DEFAULT_ANOMALIES,
    format: Annotated[Format, Query(description="json (default), csv or parquet.")] = Format.json,
):
    span = resolve_range(start, end)
    if series_id is not None:
        series_or_404(conn, principal, series_id, action="read.anomalies")
        rows = queries.read_anomalies(read, span.start, span.end, series_id=series_id, limit=limit)
    else:
        allowed = readable(conn, principal)
        allowed -= purpose_refusals(conn, principal, allowed, action="read.anomalies")
        rows = queries.read_anomalies(read, span.start, span.end, series_ids=sorted(allowed), limit=limit)
    per_series: dict[int, int] = {}
    for row in rows:
        per_series[row.series_id] = per_series.get(row.series_id, 0) + 1
    account(conn, principal, action="read.anomalies", reads=[DataRead(k, v) for k, v in per_series.items()],
            start=span.start, end=span.end)
    if format is not Format.json:
        columns = ("time", "series_id", "device", "quantity", "value", "score", "kind")
        return table_response(columns, [tuple(getattr(r, c) for c in columns) for r in rows], fmt=format,
                              name="anomalies")
    return AnomaliesPublic(
        start=span.start,
        end=span.end,
        count=len(rows),
        truncated=len(rows) == limit,
        data=[AnomalyPublic.model_validate(r) for r in rows],
    )
