"""Temporal evolution of entities (clause 5.7.3–5.7.4, 6.18–6.19):

    GET /ngsi-ld/v1/temporal/entities              query temporal evolution (entities as in /entities)
    GET /ngsi-ld/v1/temporal/entities/{entityId}   one entity's history

The instances of an attribute are the readings of its series, in the model's
unit. `timerel` is `before` (t < timeAt), `after` (t > timeAt) or `between`
(timeAt <= t < endTimeAt); `lastN` keeps the newest N. Representations:
normalized (instances with observedAt and unitCode), concise,
`temporalValues` (`values: [[value, time], ...]`) and `aggregatedValues`
(`aggrMethods` totalCount, distinctCount, sum, avg, min, max, stddev, sumsq
over `aggrPeriodDuration`, each `[value, start, end]`).

Aggregation is answered from the stored window aggregates when a window fits:
the period is a multiple of a configured window width and the range starts
and ends on the period's grid (epoch-aligned); otherwise from the raw
readings (distinctCount always from raw readings). More than
`MAX_INSTANCES` instances of one attribute answer 206 Partial Content with a
`Content-Range: date-time <first>-<last>/<lastN or *>` header (clause 6.3.10).

A context entity linked to one of our devices answers the attributes that fed
the device's series from those readings and typed readings (`api.ngsild.linked`);
its other attributes are their one current instance. Reads keep to the grant's
purpose (the series the selection refused are not read), withhold periods below
its k-anonymity, and are audited (`ngsild.read.temporal`).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.access import account
from api.deps import ConnDep
from api.ngsild.context import Context
from api.ngsild.entities import LOCATION, NativeEntity
from api.ngsild.errors import NgsiLdError
from api.ngsild.linked import linked_history
from api.ngsild.request import AcceptDep, CallerDep, ContextDep, vocabulary
from api.ngsild.routes import DEFAULT_LIMIT, MAX_LIMIT, one_entity, respond
from api.ngsild.selection import Selected, Selection, iris, select
from api.ngsild.vocabulary import MODELS
from api.ngsild.writes import linked_device
from api.privacy import k_withheld
from storage import ngsild as store
from storage import queries
from storage.audit import DataRead

__all__ = ["MAX_INSTANCES", "router"]

router = APIRouter(prefix="/ngsi-ld/v1/temporal", tags=["ngsi-ld"])

MAX_INSTANCES = 10_000
METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
_DURATION = re.compile(r"^P(?:(\d+)W|(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?)$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ACTION = "ngsild.read.temporal"   # the audit log's action of a temporal read


def _time(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_instant(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise NgsiLdError("BadRequestData", f"{name} {text!r} is not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        raise NgsiLdError("BadRequestData", f"{name} {text!r} has no time zone (add Z or an offset)")
    return value


def parse_duration(text: str) -> float:
    """Seconds of an ISO 8601 duration P[n]W or P[n]DT[n]H[n]M[n]S (0: the whole range)."""
    match = _DURATION.match(text)
    if not match or text in ("P", "PT"):
        if re.match(r"^P(\d+Y)?(\d+M)?", text) and ("Y" in text.split("T")[0] or "M" in text.split("T")[0]):
            raise NgsiLdError("BadRequestData", f"aggrPeriodDuration {text!r}: years and months have no fixed "
                                                "length; give weeks, days, hours, minutes or seconds")
        raise NgsiLdError("BadRequestData", f"aggrPeriodDuration {text!r} is not an ISO 8601 duration")
    weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return weeks * 604_800 + days * 86_400 + hours * 3600 + minutes * 60 + seconds


def time_range(timerel: str | None, time_at: str | None, end_time_at: str | None
               ) -> tuple[datetime | None, datetime | None]:
    """[start, end) of a temporal query (None: open)."""
    at, end = parse_instant(time_at, "timeAt"), parse_instant(end_time_at, "endTimeAt")
    if timerel is None:
        if at is not None or end is not None:
            raise NgsiLdError("BadRequestData", "timeAt and endTimeAt need timerel")
        return None, None
    if at is None:
        raise NgsiLdError("BadRequestData", f"timerel={timerel} needs timeAt")
    if timerel == "before":
        return None, at
    if timerel == "after":
        return at + timedelta(microseconds=1), None
    if timerel == "between":
        if end is None:
            raise NgsiLdError("BadRequestData", "timerel=between needs endTimeAt")
        if end <= at:
            raise NgsiLdError("BadRequestData", "endTimeAt must be later than timeAt")
        return at, end
    raise NgsiLdError("BadRequestData", f"timerel {timerel!r} is not before, after or between")


def _representation(options: str | None, fmt: str | None) -> str:
    chosen = "normalized"
    names = {"temporalValues": "temporalValues", "aggregatedValues": "aggregatedValues", "concise": "concise",
             "normalized": "normalized", "keyValues": "temporalValues", "simplified": "temporalValues"}
    for option in (options.split(",") if options else []):
        option = option.strip()
        if option in names:
            chosen = names[option]
        elif option not in ("", "sysAttrs"):
            raise NgsiLdError("BadRequestData", f"option {option!r} is not one the temporal API takes")
    if fmt is not None:
        if fmt not in names:
            raise NgsiLdError("BadRequestData", f"format {fmt!r} is not one the temporal API takes")
        chosen = names[fmt]
    return chosen


class _Query:
    """The parsed temporal parameters of one request."""

    def __init__(self, *, timerel, timeAt, endTimeAt, timeproperty, lastN, options, format, aggrMethods,
                 aggrPeriodDuration, widths: tuple[int, ...]) -> None:
        if timeproperty not in (None, "observedAt"):
            raise NgsiLdError("BadRequestData", f"timeproperty {timeproperty!r}: readings have observedAt only")
        self.start, self.end = time_range(timerel, timeAt, endTimeAt)
        if lastN is not None and lastN < 1:
            raise NgsiLdError("BadRequestData", "lastN must be a positive integer")
        self.last_n = lastN
        self.representation = _representation(options, format)
        self.methods: list[str] = []
        self.period_s: float | None = None
        self.widths = widths
        if self.representation == "aggregatedValues":
            if not aggrMethods:
                raise NgsiLdError("BadRequestData", "aggregatedValues needs aggrMethods")
            self.methods = [m.strip() for m in aggrMethods.split(",") if m.strip()]
            unknown = [m for m in self.methods if m not in METHODS]
            if unknown or not self.methods:
                raise NgsiLdError("BadRequestData", f"aggrMethods {unknown or aggrMethods!r}: "
                                                    f"supported are {', '.join(METHODS)}")
            seconds = parse_duration(aggrPeriodDuration or "PT0S")
            self.period_s = seconds or None


def _instances(conn, series: store.EntitySeries, query: _Query) -> tuple[list[store.Instance], bool]:
    """(instances, truncated)."""
    if query.last_n is not None:
        limit = min(query.last_n, MAX_INSTANCES)
        rows = store.readings_between(conn, series.series_id, query.start, query.end, limit=limit, newest_first=True)
        return rows, query.last_n > MAX_INSTANCES and len(rows) == limit
    rows = store.readings_between(conn, series.series_id, query.start, query.end, limit=MAX_INSTANCES + 1)
    return rows[:MAX_INSTANCES], len(rows) > MAX_INSTANCES


def _on_grid(t: datetime, step_s: float) -> bool:
    return ((t - _EPOCH) / timedelta(microseconds=1)) % (step_s * 1e6) == 0


def _periods(conn, series: store.EntitySeries, query: _Query, start: datetime, end: datetime
             ) -> list[store.Period]:
    period = query.period_s
    width = next((w for w in sorted(query.widths, reverse=True)
                  if period is not None and period % w == 0 and _on_grid(start, period) and _on_grid(end, w)), None)
    if width is not None and "distinctCount" not in query.methods:
        buckets = queries.read_aggregates(conn, series.series_id, start, end, bucket_s=int(period), width_s=width)
        return [store.Period(b.bucket, b.count, None, b.mean * b.count, b.min, b.max,
                             (b.std ** 2 + b.mean ** 2) * b.count) for b in buckets]
    return store.aggregate_readings(conn, series.series_id, start, end, period_s=period)


def _aggregated(p: store.Period, series: store.EntitySeries, method: str) -> float | int | None:
    a, b, n = series.a, series.b, p.count
    total = a * p.sum + b * n
    if method == "totalCount":
        return n
    if method == "distinctCount":
        return p.distinct
    if method == "sum":
        return total
    if method == "avg":
        return total / n
    if method == "min":
        return a * p.min + b
    if method == "max":
        return a * p.max + b
    sumsq = a * a * p.sumsq + 2 * a * b * p.sum + b * b * n
    if method == "sumsq":
        return sumsq
    return math.sqrt(max(sumsq - total * total / n, 0.0) / (n - 1)) if n > 1 else 0.0  # stddev (sample)


def _context_temporal(conn, caller, native: NativeEntity, ctx: Context, query: _Query, pick: set[str] | None,
                      reads: list[DataRead]) -> dict[str, Any]:
    """A context entity: the history of each attribute that feeds a series of the device it is
    linked to (`api.ngsild.linked`); any other attribute is its one current instance."""
    out: dict[str, Any] = {"id": native.id, "type": ctx.compact(native.type)}
    device = linked_device(native, caller.org_slug)
    series = store.device_series(conn, org=caller.org_slug, device=device) if device is not None else {}
    for iri, attribute in native.attributes.items():
        if pick is not None and iri not in pick:
            continue
        term = ctx.compact(iri)
        history = linked_history(conn, series, iri, attribute, start=query.start, end=query.end,
                                 limit=min(query.last_n or MAX_INSTANCES, MAX_INSTANCES),
                                 newest_first=query.last_n is not None) if series else None
        if history is not None:
            series_id, instances = history
            reads.append(DataRead(series_id, len(instances)))
            if not instances or query.representation == "aggregatedValues":
                continue
            if query.representation == "temporalValues":
                out[term] = {"type": "Property", "values": [[i.value, _time(i.time)] for i in instances]}
                continue
            kind = {} if query.representation == "concise" else {"type": "Property"}
            out[term] = [{**kind, "value": i.value, "observedAt": _time(i.time),
                          **({"unitCode": i.unit_code} if i.unit_code else {})} for i in instances]
            continue
        at = attribute.get("observedAt")
        if at is not None:
            t = datetime.fromisoformat(at.replace("Z", "+00:00"))
            if (query.start is not None and t < query.start) or (query.end is not None and t >= query.end):
                continue
        if query.representation == "temporalValues":
            value = attribute.get("value", attribute.get("object"))
            out[term] = {"type": attribute.get("type", "Property"), "values": [[value, at or _time(native.modified_at)]]}
        elif query.representation == "aggregatedValues":
            continue
        else:
            out[term] = [{k: v for k, v in attribute.items()
                          if not (query.representation == "concise" and k == "type")}]
    return out


def temporal_entity(conn, caller, ctx: Context, selected: Selected, query: _Query, *, pick: set[str] | None,
                    reads: list[DataRead]) -> tuple[dict[str, Any], list[tuple[datetime, datetime]]]:
    """The temporal representation of one entity and the ranges of truncated attributes; what
    it served of each series is added to `reads` (for the audit log).

    Only the series the selection left in the entity are read: those outside the purpose
    of the caller's grant were taken out there (`api.privacy.minimise_entities`). Periods
    of a personal series with fewer readings than the grant's k-anonymity are withheld,
    as /v1 aggregates withhold such buckets."""
    native = selected.native
    row = selected.device
    if row is None:
        return _context_temporal(conn, caller, native, ctx, query, pick, reads), []
    allowed = {a.series_id for a in row.attributes}
    model = MODELS[row.model]
    out: dict[str, Any] = {"id": native.id, "type": ctx.compact(model.type_iri)}
    if LOCATION in native.attributes and (pick is None or LOCATION in pick):
        location = native.attributes[LOCATION]
        out[ctx.compact(LOCATION)] = location if query.representation != "concise" else location["value"]
    truncated: list[tuple[datetime, datetime]] = []
    key = store.EntityKey(row.model, row.org, row.device)
    for series in store.series_of_entity(conn, org_id=caller.org_id, org_slug=caller.org_slug,
                                         vocabulary=vocabulary(), key=key):
        spec = model.attribute_named(series.attribute)
        if series.series_id not in allowed or (pick is not None and spec.iri not in pick):
            continue
        term = ctx.compact(spec.iri)
        if query.representation == "aggregatedValues":
            start, end = query.start, query.end
            if start is None or end is None:
                first, last = store.series_time_range(conn, [series.series_id])
                if first is None:
                    continue
                start = start or first
                end = end or last + timedelta(microseconds=1)
            periods = _periods(conn, series, query, start, end)
            k = k_withheld(conn, caller.principal, series.series_id)
            if k is not None:
                periods = [p for p in periods if p.count >= k]
            reads.append(DataRead(series.series_id, len(periods)))
            if not periods:
                continue
            attribute: dict[str, Any] = {"type": "Property"}
            for method in query.methods:
                attribute[method] = [
                    [_aggregated(p, series, method), _time(p.start),
                     _time(min(p.start + timedelta(seconds=query.period_s), end) if query.period_s else end)]
                    for p in periods
                ]
            out[term] = attribute
            continue
        instances, cut = _instances(conn, series, query)
        reads.append(DataRead(series.series_id, len(instances)))
        if not instances:
            continue
        if cut:
            truncated.append((instances[0].time, instances[-1].time))
        values = [series.a * i.value + series.b for i in instances]
        if query.representation == "temporalValues":
            out[term] = {"type": "Property", "values": [[v, _time(i.time)] for v, i in zip(values, instances)]}
        elif query.representation == "concise":
            out[term] = [{"value": v, "observedAt": _time(i.time), "unitCode": spec.unit_code}
                         for v, i in zip(values, instances)]
        else:
            out[term] = [{"type": "Property", "value": v, "observedAt": _time(i.time), "unitCode": spec.unit_code}
                         for v, i in zip(values, instances)]
    return out, truncated


def _partial(body: Any, truncated: list[tuple[datetime, datetime]], query: _Query, *, accept, ctx,
             headers: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if truncated:
        first = min(t[0] for t in truncated)
        last = min(t[1] for t in truncated)
        size = str(query.last_n) if query.last_n is not None else "*"
        headers["Content-Range"] = f"date-time {_time(first)}-{_time(last)}/{size}"
        return respond(body, accept=accept, ctx=ctx, status=206, headers=headers)
    return respond(body, accept=accept, ctx=ctx, headers=headers)


def _widths(request: Request) -> tuple[int, ...]:
    return tuple(request.app.state.settings.window_widths_s)


TimeRel = Annotated[str | None, Query(max_length=20)]
Instant = Annotated[str | None, Query(max_length=64)]


@router.get("/entities/{entityId:path}", summary="Retrieve the temporal evolution of an entity")
def read_temporal_entity(
    entityId: str, conn: ConnDep, caller: CallerDep, ctx: ContextDep, accept: AcceptDep, request: Request,
    timerel: TimeRel = None, timeAt: Instant = None, endTimeAt: Instant = None, timeproperty: TimeRel = None,
    lastN: Annotated[int | None, Query()] = None,
    attrs: Annotated[str | None, Query(max_length=4000)] = None,
    pick: Annotated[str | None, Query(max_length=4000)] = None,
    options: Annotated[str | None, Query(max_length=200)] = None,
    format: Annotated[str | None, Query(max_length=40)] = None,
    aggrMethods: Annotated[str | None, Query(max_length=200)] = None,
    aggrPeriodDuration: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    query = _Query(timerel=timerel, timeAt=timeAt, endTimeAt=endTimeAt, timeproperty=timeproperty, lastN=lastN,
                   options=options, format=format, aggrMethods=aggrMethods, aggrPeriodDuration=aggrPeriodDuration,
                   widths=_widths(request))
    found = one_entity(conn, caller, ctx, entityId)
    reads: list[DataRead] = []
    body, truncated = temporal_entity(conn, caller, ctx, found, query, pick=iris(ctx, pick or attrs), reads=reads)
    account(conn, caller.principal, action=_ACTION, reads=reads, start=query.start, end=query.end)
    return _partial(body, truncated, query, accept=accept, ctx=ctx)


@router.get("/entities", summary="Query the temporal evolution of entities")
def query_temporal_entities(
    conn: ConnDep, caller: CallerDep, ctx: ContextDep, accept: AcceptDep, request: Request,
    id: Annotated[str | None, Query(max_length=10_000)] = None,
    type: Annotated[str | None, Query(max_length=2000)] = None,
    idPattern: Annotated[str | None, Query(max_length=1000)] = None,
    attrs: Annotated[str | None, Query(max_length=4000)] = None,
    pick: Annotated[str | None, Query(max_length=4000)] = None,
    q: Annotated[str | None, Query(max_length=4096)] = None,
    georel: Annotated[str | None, Query(max_length=200)] = None,
    geometry: Annotated[str | None, Query(max_length=40)] = None,
    coordinates: Annotated[str | None, Query(max_length=100_000)] = None,
    timerel: TimeRel = None, timeAt: Instant = None, endTimeAt: Instant = None, timeproperty: TimeRel = None,
    lastN: Annotated[int | None, Query()] = None,
    limit: Annotated[int, Query()] = DEFAULT_LIMIT,
    offset: Annotated[int, Query()] = 0,
    count: Annotated[bool, Query()] = False,
    options: Annotated[str | None, Query(max_length=200)] = None,
    format: Annotated[str | None, Query(max_length=40)] = None,
    aggrMethods: Annotated[str | None, Query(max_length=200)] = None,
    aggrPeriodDuration: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    query = _Query(timerel=timerel, timeAt=timeAt, endTimeAt=endTimeAt, timeproperty=timeproperty, lastN=lastN,
                   options=options, format=format, aggrMethods=aggrMethods, aggrPeriodDuration=aggrPeriodDuration,
                   widths=_widths(request))
    if limit < 0 or offset < 0 or (limit == 0 and not count):
        raise NgsiLdError("BadRequestData", "limit and offset must not be negative; limit=0 needs count=true")
    if limit > MAX_LIMIT:
        raise NgsiLdError("TooManyResults", f"limit {limit} exceeds this broker's maximum page of {MAX_LIMIT}")
    selection = Selection.parse(ctx, id=id, type=type, idPattern=idPattern, attrs=attrs, q=q, georel=georel,
                                geometry=geometry, coordinates=coordinates)
    rows, total = select(conn, caller, selection, offset=offset, limit=limit)
    picked = iris(ctx, pick or attrs)
    bodies, truncated = [], []
    reads: list[DataRead] = []
    for row in rows:
        body, cut = temporal_entity(conn, caller, ctx, row, query, pick=picked, reads=reads)
        bodies.append(body)
        truncated += cut
    account(conn, caller.principal, action=_ACTION, reads=reads, start=query.start, end=query.end)
    headers = {"NGSILD-Results-Count": str(total)} if count else {}
    return _partial(bodies, truncated, query, accept=accept, ctx=ctx, headers=headers)
