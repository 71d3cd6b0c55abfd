"""What every face applies on the way out: classification metadata, purpose limitation, minimisation.

    privacy_of(conn, ids)        the effective classification of each series (storage.gdpr), as the
                                 `privacy` object of every series in an answer
    classification_header(...)   the same for a whole answer: the `Data-Classification` header of
                                 exports and tables, with a `Link: <...>; rel="describedby"` sidecar
    purpose_refusals(...)        series a consumer reads through a grant, holding personal data,
                                 outside the grant's purpose: refused, and each refusal audited
    coarsen(lat, lon, m)         a location at the grant's precision (a grid in metres or an H3 cell)
    k_withheld(...)              the k-anonymity threshold of aggregates of a personal series
    minimise_entities(...)       both of the above for the entities of a standard face (NGSI-LD)
    minimise_geojson(...)        the precision for SensorThings Locations and FeaturesOfInterest

The purpose of a read is stated per request: the `purpose` query parameter or
the `Data-Purpose` header (a DPV purpose, e.g. `AcademicResearch`); a narrower
DPV purpose than the granted one is within it. `PurposeMiddleware` puts it where
the access checks read it.
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlencode

import h3
import psycopg
from pydantic import BaseModel, ConfigDict, Field

from api.deps import actor
from storage import gdpr
from storage.errors import map_errors
from storage.tenants import Principal

__all__ = [
    "CATALOGUE_PRECISION",
    "PrivacyPublic",
    "PurposeMiddleware",
    "classification_header",
    "coarsen",
    "holds_personal",
    "k_withheld",
    "minimisation_of",
    "minimise_entities",
    "minimise_geojson",
    "privacy_of",
    "purpose_refusals",
    "refusal_detail",
    "sidecar",
    "stated_purpose",
]

_purpose: ContextVar[str | None] = ContextVar("citylab_purpose", default=None)


def stated_purpose() -> str | None:
    return _purpose.get()


class PurposeMiddleware:
    """Pure ASGI: the purpose the request states, for the access checks of any face."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        purpose = None
        for name, value in scope.get("headers", []):
            if name == b"data-purpose":
                purpose = value.decode("latin-1").strip() or None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("purpose"):
            purpose = query["purpose"][0].strip() or None
        token = _purpose.set(purpose)
        try:
            await self.app(scope, receive, send)
        finally:
            _purpose.reset(token)


class PrivacyPublic(BaseModel):
    """The classification of a series, with W3C DPV IRIs."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)
    personal_data: str = Field(description="none, pseudonymous or personal.")
    has_personal_data: str = Field(alias="dpv:hasPersonalData", description="dpv:NonPersonalData, "
                                   "dpv:PseudonymisedData or dpv:PersonalData.")
    legal_basis: str | None = Field(description="DPV legal basis, e.g. PublicInterest.")
    has_legal_basis: str | None = Field(alias="dpv:hasLegalBasis")
    purpose: str | None = Field(description="DPV purpose, e.g. ServiceProvision.")
    has_purpose: str | None = Field(alias="dpv:hasPurpose")
    controller: str | None
    retention_days: int | None = Field(description="Kept this many days (shorter than the lab's default).")


def privacy_of(conn: psycopg.Connection, series_ids) -> dict[int, PrivacyPublic]:
    return {sid: PrivacyPublic.model_validate(c.dpv()) for sid, c in gdpr.classifications(conn, series_ids).items()}


def holds_personal(conn: psycopg.Connection, series_ids) -> bool:
    """True when any of the series is classified personal or pseudonymous (effectively)."""
    return any(c.personal for c in gdpr.classifications(conn, series_ids).values())


def classification_header(conn: psycopg.Connection, series_ids: list[int]) -> dict[str, str]:
    """`Data-Classification` (of the strictest series; legal basis and purpose when they agree) and the
    `Link` to the JSON sidecar with every series' classification."""
    classes = list(gdpr.classifications(conn, series_ids).values())
    if not classes:
        return {}
    strictest = max(classes, key=lambda c: gdpr.CATEGORIES.index(c.personal_data))
    agree = {(c.legal_basis, c.purpose, c.controller) for c in classes}
    summary = strictest if len(agree) == 1 else gdpr.Classification(personal_data=strictest.personal_data)
    sidecar = "/v1/classification?" + urlencode([("series_id", s) for s in sorted(set(series_ids))])
    return {"Data-Classification": summary.header(), "Link": f'<{sidecar}>; rel="describedby"'}


def _own_or_open(conn: psycopg.Connection, principal: Principal, ids: list[int]) -> set[int]:
    with map_errors("own series"):
        rows = conn.execute(
            "SELECT s.id FROM series s WHERE s.id = ANY(%s) AND s.org = %s"
            " UNION SELECT ps.series_id FROM data_product_series ps JOIN data_products p ON p.id = ps.product_id"
            " WHERE p.open AND ps.series_id = ANY(%s)", (ids, principal.org_slug, ids)).fetchall()
    return {r[0] for r in rows}


def purpose_refusals(conn: psycopg.Connection, principal: Principal, series_ids, *, action: str) -> set[int]:
    """The series of `series_ids` whose read is outside the purpose of every grant it goes through
    (personal or pseudonymous data only); each refusal is written to the audit log."""
    ids = sorted(set(series_ids))
    if not ids or principal.anonymous:
        return set()
    own = _own_or_open(conn, principal, ids)   # once: one statement for every series
    through = [sid for sid in ids if sid not in own]
    if not through:
        return set()
    personal = {sid for sid, c in gdpr.classifications(conn, through).items() if c.personal}
    if not personal:
        return set()
    stated = stated_purpose()
    purposes = gdpr.grant_purposes(conn, consumer_org=principal.org_id, series_ids=sorted(personal))
    refused = {sid for sid in personal
               if sid in purposes and not any(gdpr.purpose_covers(p, stated) for p in purposes[sid])}
    if refused:
        gdpr.record_refusals(conn, actor=actor(principal), action=f"refused.{action}", org_id=principal.org_id,
                             key_id=principal.key_id, series_ids=sorted(refused),
                             detail={"purpose": stated, "granted": sorted({p or "" for s in refused
                                                                          for p in purposes[s]})})
    return refused


def refusal_detail(series_id: int) -> str:
    stated = stated_purpose()
    if stated is None:
        return (f"series {series_id} holds personal data: name the purpose of this read (the `purpose` "
                "parameter or the Data-Purpose header) within the purpose of your grant")
    return f"series {series_id} holds personal data and your grant does not cover the purpose {stated!r}"


def minimisation_of(conn: psycopg.Connection, principal: Principal, series_ids) -> dict[int, gdpr.Minimisation]:
    """The grant minimisation of each series the caller reads through a grant (not its own nor open)."""
    ids = sorted(set(series_ids))
    if not ids or principal.anonymous:
        return {}
    own = _own_or_open(conn, principal, ids)
    through = [sid for sid in ids if sid not in own]
    return gdpr.minimisations(conn, consumer_org=principal.org_id, series_ids=through) if through else {}


_M_PER_DEGREE = 111_320.0
# Where the public DCAT-AP catalogue places a product holding personal data: its H3 cell of
# resolution 7 (about 5 km²), never the devices' points.
CATALOGUE_PRECISION = gdpr.Minimisation(grant_id=0, location_h3_res=7)


def coarsen(lat: float | None, lon: float | None, m: gdpr.Minimisation | None) -> tuple[float | None, float | None]:
    """The location at the grant's precision: the centre of its H3 cell, or of its grid square."""
    if lat is None or lon is None or m is None:
        return lat, lon
    if m.location_h3_res is not None:
        lat, lon = h3.cell_to_latlng(h3.latlng_to_cell(lat, lon, m.location_h3_res))
    if m.location_grid_m is not None:
        step = m.location_grid_m / _M_PER_DEGREE
        lat = (math.floor(lat / step) + 0.5) * step
        lon_step = m.location_grid_m / (_M_PER_DEGREE * max(math.cos(math.radians(lat)), 1e-6))
        lon = (math.floor(lon / lon_step) + 0.5) * lon_step
    return lat, lon


def minimise_entities(conn: psycopg.Connection, principal: Principal, rows: list) -> tuple[list, int]:
    """Entities of a standard face (rows with `attributes` of `series_id`, `lat`, `lon`): the attributes
    outside the purpose of the caller's grant left out (an entity left with none is dropped), the
    location at the grant's precision. Returns the rows and how many were dropped."""
    ids = sorted({a.series_id for r in rows for a in r.attributes})
    if not ids:
        return rows, 0
    refused = purpose_refusals(conn, principal, ids, action="ngsild.read")
    minimised = minimisation_of(conn, principal, ids)
    out = []
    for row in rows:
        attributes = tuple(a for a in row.attributes if a.series_id not in refused)
        if row.attributes and not attributes:
            continue
        precision = next((minimised[a.series_id] for a in attributes if a.series_id in minimised), None)
        lat, lon = coarsen(row.lat, row.lon, precision)
        out.append(replace(row, attributes=attributes, lat=lat, lon=lon))
    return out, len(rows) - len(out)


def minimise_geojson(conn: psycopg.Connection, principal: Principal, body: Any) -> Any:
    """A SensorThings answer with every Location's `location` and FeatureOfInterest's `feature`
    (their `@iot.id` is the device's thing id) at the precision of the caller's grant."""
    found: list[tuple[dict, str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("location", "feature"):
                geo = node.get(key)
                if isinstance(geo, dict) and geo.get("type") == "Point" and isinstance(node.get("@iot.id"), int):
                    found.append((node, key))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body)
    if not found or principal.anonymous:
        return body
    things = gdpr.thing_series(conn, sorted({n["@iot.id"] for n, _ in found}))
    minimised = minimisation_of(conn, principal, [s for ids in things.values() for s in ids])
    for node, key in found:
        precision = next((minimised[s] for s in things.get(node["@iot.id"], []) if s in minimised), None)
        if precision is not None:
            lon, lat = node[key]["coordinates"][:2]
            lat, lon = coarsen(lat, lon, precision)
            node[key] = {**node[key], "coordinates": [lon, lat]}
    return body


def k_withheld(conn: psycopg.Connection, principal: Principal, series_id: int) -> int | None:
    """The k below which aggregate buckets of `series_id` are withheld from this caller, if any."""
    m = minimisation_of(conn, principal, [series_id]).get(series_id)
    if m is None or m.k_anonymity is None:
        return None
    return m.k_anonymity if gdpr.classifications(conn, [series_id])[series_id].personal else None


def sidecar(conn: psycopg.Connection, series_ids: list[int]) -> dict[str, Any]:
    """The JSON-LD sidecar of an export: each series' classification in DPV terms."""
    return {
        "@context": {"dpv": gdpr.DPV},
        "series": [{"series_id": sid, **p.model_dump(by_alias=True)}
                   for sid, p in sorted(privacy_of(conn, series_ids).items())],
    }
