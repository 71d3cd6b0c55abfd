"""The series catalogue, raw readings (paged by cursor), aggregates and latest values.

    GET /v1/series                          catalogue (filters; `Link: <...>; rel="next"` pages)
    GET /v1/series/{series_id}/readings     raw readings: JSON pages, or all of [start, end) as CSV/Parquet
    GET /v1/series/{series_id}/aggregates   re-bucketed aggregates (JSON, CSV, Parquet)
    GET /v1/latest                          newest reading of each readable series

Only series the caller's organisation may read are visible (see api.access); without a
key, the series of open products (rate-limited per client address).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from api.access import account, readable, series_or_404
from api.deps import ConnDep, ReadConnDep, ReaderDep, RoutesDep, SettingsDep, public_link
from api.errors import Problem
from api.models import (
    AggregatePublic,
    AggregatesPublic,
    LatestPublic,
    ReadingPublic,
    ReadingsPublic,
    SeriesPublic,
)
from api.params import Instant, parse_bucket, resolve_range
from api.privacy import classification_header, coarsen, k_withheld, minimisation_of, privacy_of, purpose_refusals
from api.routes import problem_responses
from api.routes.exports import stream_readings
from api.tabular import Format, table_response
from storage import queries
from storage.audit import DataRead

router = APIRouter(tags=["series"])

MAX_READINGS = 100_000
DEFAULT_READINGS = 10_000
MAX_BUCKETS = 100_000
MAX_CATALOGUE = 10_000

SeriesId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Series id from GET /v1/series.")]
Start = Annotated[Instant | None, Query(description="Inclusive start; default end − 1 h.")]
End = Annotated[Instant | None, Query(description="Exclusive end; default now.")]
FormatQ = Annotated[Format, Query(description="json (default), csv or parquet.")]
TABLE_RESPONSES = {200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}}


def _series_public(conn, principal, entries: list) -> list[SeriesPublic]:
    """Series with their classification, locations at the precision of the caller's grants."""
    ids = [e.id for e in entries]
    privacy = privacy_of(conn, ids)
    minimised = minimisation_of(conn, principal, ids)
    out = []
    for e in entries:
        public = SeriesPublic.model_validate(e).model_copy(update={"privacy": privacy.get(e.id)})
        if e.id in minimised and public.lat is not None:
            lat, lon = coarsen(public.lat, public.lon, minimised[e.id])
            public = public.model_copy(update={"lat": lat, "lon": lon})
        out.append(public)
    return out


@router.get(
    "/series",
    response_model=list[SeriesPublic],
    summary="Series catalogue",
    description="The series your organisation may read (its own devices' and its grants'), by id, filtered by "
    "quantity, provider, bounding box (`bbox=min_lon,min_lat,max_lon,max_lat`) and data product. At most "
    "`limit` per page; a `Link: <...>; rel=\"next\"` header points to the next page.",
    responses=problem_responses(400, 401, 429, 422, 503),
)
def read_series(
    conn: ConnDep,
    read: ReadConnDep,
    principal: ReaderDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
    quantity: Annotated[str | None, Query(max_length=64, examples=["pm2_5"])] = None,
    provider: Annotated[str | None, Query(max_length=64, description="Organisation slug of the provider.")] = None,
    bbox: Annotated[str | None, Query(max_length=128, description="min_lon,min_lat,max_lon,max_lat (WGS 84).",
                                      examples=["5.6,58.9,5.8,59.0"])] = None,
    product: Annotated[int | None, Query(ge=1, le=2**62, description="Only series of this data product.")] = None,
    cursor: Annotated[int, Query(ge=0, le=2**31 - 1, description="Series id to continue after.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_CATALOGUE)] = 1000,
) -> list[SeriesPublic]:
    box = None
    if bbox is not None:
        try:
            box = tuple(float(p) for p in bbox.split(","))
        except ValueError:
            box = ()
        if len(box) != 4 or not (-180 <= box[0] <= box[2] <= 180 and -90 <= box[1] <= box[3] <= 90):
            raise Problem(422, f"bbox {bbox!r} must be min_lon,min_lat,max_lon,max_lat with min <= max "
                               "(longitudes -180..180, latitudes -90..90)", title="Invalid request")
    rows = queries.catalogue(read, org_id=principal.org_id, org_slug=principal.org_slug, quantity=quantity,
                             provider=provider, bbox=box, product_id=product, after=cursor, limit=limit)
    if len(rows) == limit:
        response.headers["Link"] = f'<{public_link(settings, request, cursor=rows[-1].id)}>; rel="next"'
    return _series_public(conn, principal, rows)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a cursor value")


def _decode_cursor(text: str) -> tuple[int, int]:
    """(time in µs, readings to skip) of a cursor this API gave out; 400 for anything else
    (not base64 JSON, other keys, non-integers such as 1.5, Infinity, NaN or 1e400, out of range)."""
    try:
        data = json.loads(base64.b64decode(text.encode() + b"=" * (-len(text) % 4), altchars=b"-_", validate=True),
                          parse_constant=_refuse_constant)
    except (ValueError, UnicodeError, RecursionError):
        data = None
    if not (isinstance(data, dict) and set(data) == {"t", "k"}
            and all(type(data[key]) is int for key in ("t", "k"))):
        raise Problem(400, "cursor is not one this API gave out (take next_cursor from the previous page)",
                      title="Invalid cursor")
    t_us, skip = data["t"], data["k"]
    if not (0 <= skip < 2**62 and 0 <= t_us < 2**62):
        raise Problem(400, "cursor is out of range", title="Invalid cursor")
    return t_us, skip


def _encode_cursor(t_us: int, skip: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"t": t_us, "k": skip}).encode()).decode().rstrip("=")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


@router.get(
    "/series/{series_id}/readings",
    response_model=ReadingsPublic,
    summary="Raw readings of one series",
    description="Readings in [start, end), oldest first. JSON: at most `limit` per page, continue with `cursor` "
    "= `next_cursor`. CSV or Parquet (`format`): every reading of [start, end), streamed.",
    responses={**problem_responses(400, 401, 429, 404, 422, 503), **TABLE_RESPONSES},
)
def read_readings(
    conn: ConnDep,
    read: ReadConnDep,
    routes: RoutesDep,
    principal: ReaderDep,
    series_id: SeriesId,
    start: Start = None,
    end: End = None,
    limit: Annotated[int, Query(ge=1, le=MAX_READINGS, description="At most this many readings.")] = DEFAULT_READINGS,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page.")] = None,
    format: FormatQ = Format.json,
):
    span = resolve_range(start, end)
    series = series_or_404(conn, principal, series_id, action="read.readings")
    if format is not Format.json:
        return stream_readings(routes, routes.lsn_for_read(conn), principal, [series_id], span.start, span.end,
                               format,
                               name=f"series-{series_id}")
    from_time, skip = span.start, 0
    if cursor is not None:
        t_us, skip = _decode_cursor(cursor)
        try:
            from_time = _EPOCH + timedelta(microseconds=t_us)
        except OverflowError:
            raise Problem(400, "cursor is out of range", title="Invalid cursor") from None
        if not span.start <= from_time < span.end:
            raise Problem(400, "cursor lies outside [start, end): pass the same start and end as for the first page",
                          title="Invalid cursor")
    rows = queries.read_readings(read, series_id, from_time, span.end, limit=limit, skip=skip)
    next_cursor = None
    if len(rows) == limit:
        last = rows[-1].time
        same = sum(1 for r in rows if r.time == last)
        if last == from_time:
            same += skip
        next_cursor = _encode_cursor(_us(last), same)
    account(conn, principal, action="read.readings", reads=[DataRead(series_id, len(rows))],
            start=from_time, end=span.end)
    return ReadingsPublic(
        series=_series_public(conn, principal, [series])[0],
        start=span.start,
        end=span.end,
        count=len(rows),
        truncated=next_cursor is not None,
        next_cursor=next_cursor,
        data=[ReadingPublic(time=r.time, value=r.value) for r in rows],
    )


@router.get(
    "/series/{series_id}/aggregates",
    response_model=AggregatesPublic,
    summary="Aggregates of one series in buckets",
    description=(
        "The stored aggregates whose bucket starts in [start, end), merged into buckets of `bucket` "
        "(aligned to the Unix epoch): count, mean, min, max, last and population std, exact as if computed "
        "from the raw readings. Empty buckets are left out. JSON, CSV or Parquet."
    ),
    responses={**problem_responses(401, 429, 404, 422, 503), **TABLE_RESPONSES},
)
def read_aggregates(
    conn: ConnDep,
    read: ReadConnDep,
    settings: SettingsDep,
    principal: ReaderDep,
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
    format: FormatQ = Format.json,
):
    span = resolve_range(start, end)
    widths = sorted(set(settings.window_widths_s))
    bucket_s = parse_bucket(bucket, multiple_of=widths[0])
    buckets = (span.end - span.start).total_seconds() / bucket_s
    if buckets > MAX_BUCKETS:
        raise Problem(422, f"[start, end) spans {buckets:.0f} buckets of {bucket_s} s; at most {MAX_BUCKETS}: "
                           "use a larger bucket or a shorter range", title="Invalid request")
    # The widest stored window that divides the bucket: fewest rows to merge.
    width_s = max(w for w in widths if bucket_s % w == 0)
    series = series_or_404(conn, principal, series_id, action="read.aggregates")
    rows = queries.read_aggregates(read, series_id, span.start, span.end, bucket_s=bucket_s, width_s=width_s)
    if not rows and width_s != widths[0]:
        # Wider windows are absent where only the base width was stored (imported data): merge those.
        rows = queries.read_aggregates(read, series_id, span.start, span.end, bucket_s=bucket_s, width_s=widths[0])
    k = k_withheld(conn, principal, series_id)
    if k is not None:  # buckets of fewer than k readings of a personal series are withheld
        rows = [r for r in rows if r.count >= k]
    account(conn, principal, action="read.aggregates", reads=[DataRead(series_id, len(rows))],
            start=span.start, end=span.end)
    if format is not Format.json:
        columns = ("bucket", "count", "mean", "min", "max", "last", "std")
        table = table_response(
            ("series_id", "unit", *columns),
            [(series_id, series.unit, *(getattr(r, c) for c in columns)) for r in rows],
            fmt=format, name=f"series-{series_id}-aggregates",
        )
        table.headers.update(classification_header(conn, [series_id]))
        return table
    return AggregatesPublic(
        series=_series_public(conn, principal, [series])[0],
        start=span.start,
        end=span.end,
        bucket_s=bucket_s,
        data=[AggregatePublic.model_validate(r) for r in rows],
    )


@router.get(
    "/latest",
    response_model=list[LatestPublic],
    summary="Latest values",
    description="The newest reading of each series your organisation may read (or of `series_id`, repeatable), "
    "optionally of one quantity.",
    responses={**problem_responses(401, 429, 422, 503), **TABLE_RESPONSES},
)
def read_latest(
    conn: ConnDep,
    read: ReadConnDep,
    principal: ReaderDep,
    series_id: Annotated[list[int] | None, Query(description="Only these series (repeatable).")] = None,
    quantity: Annotated[str | None, Query(max_length=64)] = None,
    format: FormatQ = Format.json,
):
    allowed = readable(conn, principal)
    wanted = sorted(allowed if series_id is None else allowed & set(series_id))
    wanted = sorted(set(wanted) - purpose_refusals(conn, principal, wanted, action="read.latest"))
    rows = queries.latest_values(read, wanted)
    if quantity is not None:
        rows = [r for r in rows if r.quantity == quantity]
    account(conn, principal, action="read.latest", reads=[DataRead(r.series_id, 1) for r in rows],
            start=None, end=None)
    if format is not Format.json:
        columns = ("series_id", "device", "quantity", "unit", "time", "value")
        table = table_response(columns, [tuple(getattr(r, c) for c in columns) for r in rows], fmt=format,
                               name="latest")
        table.headers.update(classification_header(conn, [r.series_id for r in rows]))
        return table
    privacy = privacy_of(conn, [r.series_id for r in rows])
    return [LatestPublic.model_validate(r).model_copy(update={"privacy": privacy.get(r.series_id)}) for r in rows]
