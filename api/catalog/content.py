"""Reads what the catalogue says from storage (one call per concept, no SQL here)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import psycopg

from api.catalog.graph import CatalogContent, DataServiceFace
from citylab.settings import Settings
from storage import catalog as store
from api.privacy import CATALOGUE_PRECISION, coarsen
from storage.gdpr import CATEGORIES, classifications
from storage.products import list_products, products_quality

__all__ = ["FACES", "load_content", "served_faces"]

# The API faces a catalogue may describe; each is listed when the app serves its path.
FACES = (
    DataServiceFace("v1", "/v1", "citylab API v1",
                    "Series, raw readings, aggregates, latest values, anomalies, exports and data products "
                    "as JSON, CSV and Parquet (OpenAPI 3.1 document at /openapi.json).",
                    "https://spec.openapis.org/oas/v3.1.0", "OpenAPI Specification 3.1.0", "/openapi.json"),
    DataServiceFace("sensorthings", "/sta/v1.1", "OGC SensorThings API 1.1",
                    "The series as SensorThings Things, Datastreams and Observations.",
                    "http://www.opengis.net/doc/is/sensorthings/1.1", "OGC SensorThings API Part 1: Sensing 1.1"),
    DataServiceFace("sensorthings", "/v1.1", "OGC SensorThings API 1.1",
                    "The series as SensorThings Things, Datastreams and Observations.",
                    "http://www.opengis.net/doc/is/sensorthings/1.1", "OGC SensorThings API Part 1: Sensing 1.1"),
    DataServiceFace("ngsi-ld", "/ngsi-ld/v1", "ETSI NGSI-LD",
                    "The series as NGSI-LD entities of the Smart Data Models.",
                    "https://www.etsi.org/deliver/etsi_gs/CIM/001_099/009/01.08.01_60/gs_CIM009v010801p.pdf",
                    "ETSI GS CIM 009 NGSI-LD API"),
)

QUALITY_DAYS = (7, 30)
MAX_PRODUCTS = 10_000


def served_faces(paths: set[str]) -> list[DataServiceFace]:
    """The faces among FACES that the app serves (a route under the face's path); the first
    path found of each face when it may be mounted at more than one."""
    found: dict[str, DataServiceFace] = {}
    for face in FACES:
        if face.name not in found and any(p == face.path or p.startswith(face.path + "/") for p in paths):
            found[face.name] = face
    return list(found.values())


def load_content(
    conn: psycopg.Connection, settings: Settings, *, faces: list[DataServiceFace], now: datetime | None = None,
) -> CatalogContent:
    now = now or datetime.now(UTC)
    products = list_products(conn, listed_only=True, limit=MAX_PRODUCTS)
    everyone = {p.id: p for p in store.publishers(conn)}
    if settings.catalog_publisher:
        publisher = next((p for p in everyone.values() if p.slug == settings.catalog_publisher), None)
    else:
        publisher = next((p for p in everyone.values() if p.kind == "city"), None)
    series: dict[int, list[store.ProductSeries]] = {}
    for row in store.product_series(conn, [p.id for p in products]):
        series.setdefault(row.product_id, []).append(row)
    width = min(settings.window_widths_s)
    windows = [products_quality(conn, [p.id for p in products], days=d, width_s=width, now=now)
               for d in QUALITY_DAYS]   # one statement per window length, not one per product
    quality = {p.id: [w[p.id] for w in windows] for p in products}
    classes = classifications(conn, {s.series_id for rows in series.values() for s in rows})
    privacy = {pid: max((classes[s.series_id] for s in rows if s.series_id in classes),
                        key=lambda c: CATEGORIES.index(c.personal_data))
               for pid, rows in series.items() if any(s.series_id in classes for s in rows)}
    for pid, rows in series.items():   # the public catalogue never places personal data exactly
        if pid in privacy and privacy[pid].personal:
            series[pid] = [replace(r, **dict(zip(("lat", "lon"), coarsen(r.lat, r.lon, CATALOGUE_PRECISION))))
                           for r in rows]
    return CatalogContent(
        base=settings.base_url, title=settings.catalog_title, description=settings.catalog_description,
        publisher=publisher, products=products, publishers={p.org_id: everyone[p.org_id] for p in products},
        series=series, quality=quality, computed_at=now, services=faces,
        sources=store.harvest_sources(conn), external=store.external_datasets(conn), privacy=privacy,
    )
