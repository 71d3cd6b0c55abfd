"""GET /v1/series, /v1/series/{series_id}/readings and /v1/series/{series_id}/aggregates."""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Path, Query

from api.deps import ConnDep, SettingsDep
from api.errors import Problem
from api.models import (
    AggregatePublic,
    AggregatesPublic,
    ReadingPublic,
    ReadingsPublic,
    SeriesPublic,
)
from api.params import Instant, parse_bucket, resolve_range
from api.routes import problem_responses
from storage import queries

router = APIRouter(prefix="/series", tags=["series"])

MAX_READINGS = 100_000
DEFAULT_READINGS = 10_000
MAX_BUCKETS = 100_000

SeriesId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Series id from GET /v1/series.")]
Start = Annotated[Instant | None, Query(description="Inclusive start; default end − 1 h.")]
End = Annotated[Instant | None, Query(description="Exclusive end; default now.")]


def _series_or_404(conn: psycopg.Connection, series_id: int) -> queries.SeriesInfo:
    found = queries.get_series(conn, series_id)
    if found is None:
        raise Problem(404, f"no series with id {series_id}")
    return found


@router.get(
    "",
    response_model=list[SeriesPublic],
    summary="List series",
    description="Every series (device, quantity, unit), by id.",
    responses=problem_responses(503),
)
def read_series(conn: ConnDep) -> list[SeriesPublic]:
    return [SeriesPublic.model_validate(s) for s in queries.list_series(conn)]


@router.get(
    "/{series_id}/readings",
    response_model=ReadingsPublic,
    summary="Raw readings of one series",
    description="Readings in [start, end), oldest first, at most `limit` (`truncated` says when it cut).",
    responses=problem_responses(404, 422, 503),
)
def read_readings(
    conn: ConnDep,
    series_id: SeriesId,
    start: Start = None,
    end: End = None,
    limit: Annotated[int, Query(ge=1, le=MAX_READINGS, description="At most this many readings.")] = DEFAULT_READINGS,
) -> ReadingsPublic:
    span = resolve_range(start, end)
    series = _series_or_404(conn, series_id)
    rows = queries.read_readings(conn, series_id, span.start, span.end, limit=limit)
    return ReadingsPublic(
        series=SeriesPublic.model_validate(series),
        start=span.start,
        end=span.end,
        count=len(rows),
        truncated=len(rows) == limit,
        data=[ReadingPublic(time=r.time, value=r.value) for r in rows],
    )


@router.get(
    "/{series_id}/aggregates",
    response_model=AggregatesPublic,
    summary="Aggregates of one series in buckets",
    description=(
        "The stored 1-minute aggregates whose bucket starts in [start, end), merged into buckets of `bucket` "
        "(aligned to the Unix epoch): count, mean, min, max, last and population std, exact as if computed "
        "from the raw readings. Empty buckets are left out."
    ),
    responses=problem_responses(404, 422, 503),
)
def read_aggregates(
    conn: ConnDep,
    settings: SettingsDep,
    series_id: SeriesId,
    start: Start = None,
    end: End = None,
    bucket: Annotated[
        str,
        Query(
            description="ISO 8601 duration (PT1M, PT15M, PT1H, P1D) or whole seconds (900); "
            "a positive multiple of 60 s.",
            examples=["PT15M"],
            max_length=32,
        ),
    ] = "PT1M",
) -> AggregatesPublic:
    span = resolve_range(start, end)
    widths = sorted(set(settings.window_widths_s))
    bucket_s = parse_bucket(bucket, multiple_of=widths[0])
    buckets = (span.end - span.start).total_seconds() / bucket_s
    if buckets > MAX_BUCKETS:
        raise Problem(422, f"[start, end) spans {buckets:.0f} buckets of {bucket_s} s; at most {MAX_BUCKETS}: "
                           "use a larger bucket or a shorter range", title="Invalid request")
    # The widest stored window that divides the bucket: fewest rows to merge.
    width_s = max(w for w in widths if bucket_s % w == 0)
    series = _series_or_404(conn, series_id)
    rows = queries.read_aggregates(conn, series_id, span.start, span.end, bucket_s=bucket_s, width_s=width_s)
    return AggregatesPublic(
        series=SeriesPublic.model_validate(series),
        start=span.start,
        end=span.end,
        bucket_s=bucket_s,
        data=[AggregatePublic.model_validate(r) for r in rows],
    )
