"""Routes of the public page.

    GET /open                     the page (Norwegian Bokmål and English)
    GET /open/static/{file}       its script and style sheet
    GET /open/api/overview        open series with places and latest values, quantities with units and
                                  classes, products with provider and licence, the map's tile source,
                                  and the datasets harvested from neighbouring labs
    GET /open/api/chart           one quantity over the last day (15 min buckets) or week (1 h buckets),
                                  merged across the open series

Without a key these count against the per-address limit like every keyless read, and
are audited as anonymous reads.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel

from api.access import account
from api.deps import ConnDep, ReaderDep, SettingsDep
from api.errors import Problem
from api.models import MapPublic
from protocol.quantities import AIR_QUALITY_CLASSES, LABELS_NB, QUANTITIES
from protocol.units import UNITS
from storage.audit import DataRead
from storage.catalog import external_datasets
from storage.open_data import open_quantity_buckets, open_series
from storage.products import LICENCES

__all__ = ["STATIC_DIR", "router"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
RANGES = {"day": (timedelta(days=1), 900), "week": (timedelta(days=7), 3600)}

router = APIRouter(tags=["open data"])


class ClassPublic(BaseModel):
    low: float
    high: float | None
    colour: str
    label_nb: str
    label_en: str
    advice_en: str


class QuantityPublic(BaseModel):
    name: str
    label_en: str
    label_nb: str
    description: str
    unit: str
    unit_name: str
    unit_symbol: str
    unit_definition: str
    classes: list[ClassPublic]


class OpenSeriesPublic(BaseModel):
    series_id: int
    device: str
    area: str
    quantity: str
    unit: str | None
    lat: float
    lon: float
    product_id: int
    time: datetime | None
    value: float | None


class OpenProductPublic(BaseModel):
    id: int
    title: str
    title_nb: str
    provider: str
    licence: str
    licence_uri: str
    series_ids: list[int]
    dataset: str                   # its entry in the DCAT-AP catalogue


class ExternalPublic(BaseModel):
    """A dataset of a neighbouring lab or portal, harvested into this lab's catalogue."""

    iri: str
    title: str
    publisher: str
    landing_page: str | None
    source: str


class OverviewPublic(BaseModel):
    generated_at: datetime
    map: MapPublic
    quantities: list[QuantityPublic]
    series: list[OpenSeriesPublic]
    products: list[OpenProductPublic]
    external: list[ExternalPublic]


class BucketPublic(BaseModel):
    t: datetime
    mean: float
    min: float
    max: float
    count: int


class ChartPublic(BaseModel):
    quantity: str
    unit: str
    range: Literal["day", "week"]
    bucket_s: int
    series: int
    data: list[BucketPublic]


def _quantity(name: str, unit: str | None) -> QuantityPublic:
    q = QUANTITIES.get(name)
    u = UNITS.get(unit or (q.unit if q else ""))
    return QuantityPublic(
        name=name, label_en=q.label if q else name, label_nb=LABELS_NB.get(name, q.label if q else name),
        description=q.description if q else "", unit=unit or "", unit_name=u.name if u else "",
        unit_symbol=u.symbol if u else (unit or ""), unit_definition=u.definition if u else "",
        classes=[ClassPublic.model_validate(c, from_attributes=True) for c in AIR_QUALITY_CLASSES.get(name, ())
                 if unit == "ug/m3"],
    )


@router.get("/open", include_in_schema=False, response_model=None)
def read_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/open/static/{name}", include_in_schema=False, response_model=None)
def read_asset(name: str) -> FileResponse:
    target = (STATIC_DIR / name).resolve()
    if target.parent != STATIC_DIR.resolve() or not target.is_file():
        raise HTTPException(404, "no such asset")
    return FileResponse(target, headers={"Cache-Control": "public, max-age=300"})


@router.get("/open/api/overview", response_model=OverviewPublic, summary="The open data of the city page")
def read_overview(conn: ConnDep, settings: SettingsDep, principal: ReaderDep) -> OverviewPublic:
    rows = open_series(conn)
    products: dict[int, OpenProductPublic] = {}
    quantities: dict[str, QuantityPublic] = {}
    for r in rows:
        quantities.setdefault(r.quantity, _quantity(r.quantity, r.unit))
        product = products.setdefault(r.product_id, OpenProductPublic(
            id=r.product_id, title=r.product_title, title_nb=r.product_title_nb or r.product_title,
            provider=r.provider, licence=r.licence,
            licence_uri=LICENCES[r.licence].uri if r.licence in LICENCES else "", series_ids=[],
            dataset=f"{settings.base_url}/catalog/datasets/{r.product_id}"))
        product.series_ids.append(r.series_id)
    account(conn, principal, action="read.latest", reads=[DataRead(r.series_id, 1) for r in rows if r.time],
            start=None, end=None)
    return OverviewPublic(
        generated_at=datetime.now(UTC), map=MapPublic(tile_url=settings.map_tile_url, attribution=settings.map_tile_attribution),
        quantities=sorted(quantities.values(), key=lambda q: q.name),
        series=[OpenSeriesPublic.model_validate(r, from_attributes=True) for r in rows],
        products=list(products.values()),
        external=[ExternalPublic(iri=e.iri, title=e.title, publisher=e.publisher, landing_page=e.landing_page,
                                 source=e.source_url) for e in external_datasets(conn)],
    )


@router.get("/open/api/chart", response_model=ChartPublic, summary="One quantity of the open series over time")
def read_chart(
    conn: ConnDep, settings: SettingsDep, principal: ReaderDep,
    quantity: Annotated[str, Query(max_length=64)],
    period: Annotated[Literal["day", "week"], Query(alias="range")] = "day",
) -> ChartPublic:
    series = [r for r in open_series(conn) if r.quantity == quantity]
    if not series:
        raise Problem(404, f"no open series of quantity {quantity!r}")
    units = {r.unit for r in series}
    unit = sorted(u or "" for u in units)[0]
    ids = [r.series_id for r in series if (r.unit or "") == unit]   # one unit per chart
    span, bucket_s = RANGES[period]
    end = datetime.now(UTC)
    start = end - span
    widths = sorted(set(settings.window_widths_s))
    width = max(w for w in widths if bucket_s % w == 0)
    buckets = open_quantity_buckets(conn, series_ids=ids, start=start, end=end, bucket_s=bucket_s, width_s=width)
    if not buckets and width != widths[0]:
        buckets = open_quantity_buckets(conn, series_ids=ids, start=start, end=end, bucket_s=bucket_s,
                                        width_s=widths[0])
    account(conn, principal, action="read.aggregates", reads=[DataRead(sid, len(buckets)) for sid in ids],
            start=start, end=end)
    return ChartPublic(quantity=quantity, unit=unit, range=period, bucket_s=bucket_s, series=len(ids),
                       data=[BucketPublic(t=b.bucket, mean=b.mean, min=b.min, max=b.max, count=b.count)
                             for b in buckets])
