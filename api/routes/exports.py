"""GET /v1/exports/readings: raw readings of several series as streamed CSV or Parquet.

The stream takes its own pooled connection (the request's is returned when the
handler returns), on the read replica once it has replayed what was committed
before the request (api.routing), and holds one chunk at a time: CSV comes straight out of
PostgreSQL's COPY, Parquet is written one row group per chunk. When the
stream ends (or the client goes away) the rows actually sent are written to the
audit log and metered on the grants they went through, on the primary.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from api.access import account, readable
from api.deps import ConnDep, ReaderDep, RoutesDep, Unauthorized
from api.errors import Problem
from api.params import Instant, resolve_range
from api.privacy import classification_header, purpose_refusals, refusal_detail
from api.routes import problem_responses
from api.routing import DatabaseRoutes
from api.tabular import CSV_MEDIA, PARQUET_MEDIA, Format, ParquetStream
from storage import queries
from storage.audit import DataRead
from storage.errors import map_errors
from storage.exports import CSV_COLUMNS, copy_readings_csv, iter_readings_chunks
from storage.tenants import Principal

router = APIRouter(prefix="/exports", tags=["exports"])
logger = logging.getLogger("citylab.api.exports")

MAX_EXPORT_SERIES = 1000


def stream_readings(
    routes: DatabaseRoutes, lsn: str | None, principal: Principal, series_ids: list[int], start: datetime,
    end: datetime, fmt: Format, *, name: str,
) -> StreamingResponse:
    """A streamed CSV or Parquet answer of the readings of `series_ids` (already checked readable),
    with their classification in the `Data-Classification` header and a `Link` to the sidecar.
    The readings are read where `routes` says for `lsn` (`DatabaseRoutes.lsn_for_read`)."""
    counts: dict[int, int] = {}
    with map_errors("export classification"), routes.writer.connection() as conn:
        classified = classification_header(conn, series_ids)

    def generate() -> Iterator[bytes]:
        with map_errors("export"), routes.reading(lsn) as conn:
            try:
                infos = [queries.get_series(conn, sid) for sid in series_ids]
                if fmt is Format.csv:
                    yield (",".join(CSV_COLUMNS) + "\n").encode()
                    for info in infos:
                        assert info is not None
                        for part in copy_readings_csv(conn, info.id, start, end):
                            counts[info.id] = counts.get(info.id, 0) + part.count(b"\n")
                            yield part
                else:
                    parquet = ParquetStream()
                    for info in infos:
                        assert info is not None
                        for times, values in iter_readings_chunks(conn, info.id, start, end):
                            counts[info.id] = counts.get(info.id, 0) + len(times)
                            yield parquet.write(info.id, info.device, info.quantity, info.unit, times, values)
                    yield parquet.close()
            finally:
                reads = [DataRead(sid, counts.get(sid, 0)) for sid in series_ids]
                with routes.writer.connection() as writer:
                    account(writer, principal, action="export.readings", reads=reads, start=start, end=end)
                logger.info("export of %d series to %s: %d rows", len(series_ids), principal.org_slug,
                            sum(counts.values()))

    media = CSV_MEDIA if fmt is Format.csv else PARQUET_MEDIA
    suffix = "csv" if fmt is Format.csv else "parquet"
    return StreamingResponse(generate(), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="{name}.{suffix}"', **classified})


@router.get(
    "/readings",
    summary="Export raw readings",
    description="Every reading of the given series in [start, end) as CSV (columns series_id, device, quantity, "
    "unit, time, value; times ISO 8601 UTC) or Parquet (the same columns, time as timestamp[us, UTC]), "
    "streamed with bounded memory, series by series, each oldest first. Without `series_id`, every series "
    "your organisation may read.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}},
               **problem_responses(401, 404, 422, 429, 503)},
)
def export_readings(
    conn: ConnDep,
    routes: RoutesDep,
    principal: ReaderDep,
    start: Annotated[Instant | None, Query(description="Inclusive start; default end − 1 h.")] = None,
    end: Annotated[Instant | None, Query(description="Exclusive end; default now.")] = None,
    series_id: Annotated[list[int] | None, Query(description="Series to export (repeatable).")] = None,
    format: Annotated[Format, Query(description="csv (default) or parquet.")] = Format.csv,
) -> StreamingResponse:
    span = resolve_range(start, end)
    allowed = readable(conn, principal)
    wanted = sorted(set(series_id)) if series_id else sorted(allowed)
    missing = [sid for sid in wanted if sid not in allowed]
    if missing:
        if principal.anonymous:
            raise Unauthorized(f"series {missing[0]} is not open data: it needs an API key")
        raise Problem(404, f"no series with id {missing[0]} that your organisation may read")
    refused = purpose_refusals(conn, principal, wanted, action="export.readings")
    if refused and series_id:
        raise Problem(403, refusal_detail(min(refused)))
    wanted = [sid for sid in wanted if sid not in refused]
    if len(wanted) > MAX_EXPORT_SERIES:
        raise Problem(422, f"{len(wanted)} series; export at most {MAX_EXPORT_SERIES} at once",
                      title="Invalid request")
    if format is Format.json:
        raise Problem(422, "exports are csv or parquet; JSON pages are at /v1/series/{id}/readings",
                      title="Invalid request")
    return stream_readings(routes, routes.lsn_for_read(conn), principal, wanted, span.start, span.end, format,
                           name="readings")
