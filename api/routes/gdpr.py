"""GDPR: classification, erasure, grant minimisation, access and retention reports.

    PUT  /v1/series/{id}/classification    personal data, DPV legal basis and purpose, controller, retention
    PUT  /v1/devices/{device}/classification
    PUT  /v1/products/{id}/classification
    GET  /v1/classification?series_id=...  the classification of readable series (the exports' sidecar)
    POST /v1/erasure                       erase a device's or series' rows in a time range; the receipt
    GET  /v1/erasures                      receipts of erasures of your data (the operator: of the lab)
    PUT  /v1/grants/{id}/minimisation      location precision and k-anonymity of a grant (its provider)
    GET  /v1/access-report                 who read a device's or series' data, as JSON or CSV
    GET  /v1/retention-report              what per-series and per-product retention deleted, when

Writes are the data's provider's (a key with role provider or admin of the
organisation whose devices they are) or the operator's, who names the `org`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.access import readable
from api.deps import ConnDep, PrincipalDep, ReaderDep, actor
from api.errors import Problem
from api.params import Instant
from api.privacy import PrivacyPublic, PurposeMiddleware, privacy_of, sidecar
from api.routes import problem_responses
from api.tabular import Format, table_response
from storage import gdpr
from storage.audit import record_change
from storage.products import get_product
from storage.tenants import OPERATOR, Principal

router = APIRouter(tags=["gdpr"])

Category = Literal[gdpr.CATEGORIES]                       # type: ignore[valid-type]
LegalBasis = Literal[gdpr.LEGAL_BASES]                    # type: ignore[valid-type]
Purpose = Literal[gdpr.PURPOSES]                          # type: ignore[valid-type]
SeriesId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Id = Annotated[int, Path(ge=1, le=2**62)]
OrgQ = Annotated[str | None, Query(max_length=64, description="The data's organisation (operator only).")]


def install(app: FastAPI) -> None:
    """Mount the router under /v1 and read the purpose each request states."""
    app.include_router(router, prefix="/v1")
    app.add_middleware(PurposeMiddleware)


class ClassificationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    personal_data: Category | None = Field(default=None, description="none, pseudonymous or personal; null: "
                                           "inherit (a series from its device and products).")
    legal_basis: LegalBasis | None = Field(default=None, description="A DPV legal basis, e.g. PublicInterest.")
    purpose: Purpose | None = Field(default=None, description="A DPV purpose, e.g. ServiceProvision.")
    controller: str | None = Field(default=None, max_length=200, description="The controller; default the "
                                   "device's organisation.")
    retention_days: int | None = Field(default=None, ge=1, le=36_500, description="Keep this many days (series "
                                       "and products; shorter than the lab's default).")


class ErasureCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str | None = Field(default=None, min_length=1, max_length=128, description="Every series of it.")
    series_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] | None = Field(default=None, min_length=1,
                                                                               max_length=10_000)
    start: Instant = Field(description="Inclusive.")
    end: Instant = Field(description="Exclusive.")
    org: str | None = Field(default=None, max_length=64, description="The data's organisation (operator only).")


class ErasurePublic(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    id: int
    at: datetime
    actor: str
    org: str
    device: str | None
    series_ids: list[int]
    start: datetime
    end: datetime
    deleted: dict[str, int] = Field(description="Rows deleted per table.")
    reaggregated: int = Field(default=0, description="Aggregate windows re-computed from what remains.")


class MinimisationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    location_grid_m: float | None = Field(default=None, gt=0, le=1_000_000, description="Locations served "
                                          "through the grant snap to the centre of a grid of this size.")
    location_h3_res: int | None = Field(default=None, ge=0, le=15, description="Or to the centre of their H3 "
                                        "cell of this resolution.")
    k_anonymity: int | None = Field(default=None, ge=2, le=1_000_000, description="Aggregate buckets of a "
                                    "personal series with fewer readings are withheld.")


class MinimisationPublic(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    grant_id: int
    purpose: str | None
    location_grid_m: float | None
    location_h3_res: int | None
    k_anonymity: int | None


class RetentionRunPublic(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    at: datetime
    series_id: int
    days: int
    horizon: datetime = Field(description="Everything older was deleted.")
    deleted: dict[str, int]


def _data_org(principal: Principal, org: str | None) -> str:
    """Whose data a write concerns: the provider's own, or the organisation the operator names."""
    if principal.role == OPERATOR:
        if org is None:
            raise Problem(422, "the operator names the data's organisation (`org`)", title="Invalid request")
        return org
    if principal.role not in ("admin", "provider"):
        raise Problem(403, f"this needs the data's provider (role 'provider' or 'admin') or the operator; "
                           f"yours has role '{principal.role}'")
    if org is not None and org != principal.org_slug:
        raise Problem(404, f"no organisation {org!r} whose data you provide")
    return principal.org_slug


def _not_open(conn, body: ClassificationUpdate, series_ids: list[int]) -> None:
    if body.personal_data in ("pseudonymous", "personal") and gdpr.open_series(conn, series_ids):
        raise Problem(422, "an open product holds this data: personal data cannot be open data (close the "
                           "product first)", title="Invalid request")


def _audit(conn, principal: Principal, action: str, detail: dict[str, Any]) -> None:
    record_change(conn, actor=actor(principal), action=action, org_id=principal.org_id, key_id=principal.key_id,
                  owner_org=principal.org_id, detail=detail)


@router.put("/series/{series_id}/classification", response_model=PrivacyPublic,
            summary="Classify a series", responses=problem_responses(401, 403, 404, 422, 503))
def classify_series(conn: ConnDep, principal: PrincipalDep, series_id: SeriesId, body: ClassificationUpdate,
                    org: OrgQ = None) -> PrivacyPublic:
    data_org = _data_org(principal, org)
    _not_open(conn, body, [series_id])
    if not gdpr.classify_series(conn, org=data_org, series_id=series_id, **body.model_dump()):
        raise Problem(404, f"no series {series_id} of {data_org}")
    _audit(conn, principal, "gdpr.classify", {"series_id": series_id, **body.model_dump()})
    return privacy_of(conn, [series_id])[series_id]


@router.put("/devices/{device}/classification", response_model=dict[int, PrivacyPublic],
            summary="Classify a device (its series inherit)", responses=problem_responses(401, 403, 404, 422, 503))
def classify_device(conn: ConnDep, principal: PrincipalDep, device: Annotated[str, Path(max_length=128)],
                    body: ClassificationUpdate, org: OrgQ = None) -> dict[int, PrivacyPublic]:
    data_org = _data_org(principal, org)
    if body.retention_days is not None:
        raise Problem(422, "retention is set per series or product, not per device", title="Invalid request")
    fields = body.model_dump(exclude={"retention_days"})
    _not_open(conn, body, gdpr.org_series(conn, org=data_org, device=device))
    if not gdpr.classify_device(conn, org=data_org, device=device, **fields):
        raise Problem(404, f"no device {device!r} of {data_org}")
    _audit(conn, principal, "gdpr.classify", {"device": device, **fields})
    return privacy_of(conn, gdpr.org_series(conn, org=data_org, device=device))


@router.put("/products/{product_id}/classification", response_model=dict[int, PrivacyPublic],
            summary="Classify a data product (its series inherit)",
            responses=problem_responses(401, 403, 404, 422, 503))
def classify_product(conn: ConnDep, principal: PrincipalDep, product_id: Id, body: ClassificationUpdate
                     ) -> dict[int, PrivacyPublic]:
    _data_org(principal, None)
    current = get_product(conn, product_id)
    if current is not None and current.org_id == principal.org_id:
        _not_open(conn, body, current.series_ids)
    if not gdpr.classify_product(conn, org_id=principal.org_id, product_id=product_id, **body.model_dump()):
        raise Problem(404, f"your organisation has no data product with id {product_id}")
    _audit(conn, principal, "gdpr.classify", {"product_id": product_id, **body.model_dump()})
    return privacy_of(conn, current.series_ids if current else [])


@router.get("/classification", summary="Classification of series (the exports' sidecar)",
            description="Each readable series' personal-data category, legal basis, purpose and controller as "
            "W3C DPV terms (JSON-LD).", responses=problem_responses(401, 404, 422, 429, 503))
def read_classification(conn: ConnDep, principal: ReaderDep,
                        series_id: Annotated[list[int] | None, Query()] = None) -> dict[str, Any]:
    allowed = readable(conn, principal)
    wanted = sorted(allowed if not series_id else set(series_id))
    missing = [sid for sid in wanted if sid not in allowed]
    if missing:
        raise Problem(404, f"no series with id {missing[0]} that your organisation may read")
    return sidecar(conn, wanted)


@router.post("/erasure", response_model=ErasurePublic, status_code=201, summary="Erase data (GDPR Art. 17)",
             description="Deletes every reading, aggregate, anomaly and dead letter of a device (or of series) "
             "in [start, end), re-aggregates what remains, and returns the receipt, kept in the audit log. "
             "Ingest refuses readings of the erased range from then on (dead letter `erased`).",
             responses=problem_responses(401, 403, 404, 422, 503))
def create_erasure(conn: ConnDep, principal: PrincipalDep, body: ErasureCreate) -> ErasurePublic:
    data_org = _data_org(principal, body.org)
    if (body.device is None) == (body.series_ids is None):
        raise Problem(422, "name a device or series_ids (one of them)", title="Invalid request")
    if body.end <= body.start:
        raise Problem(422, "end must be after start", title="Invalid request")
    receipt = gdpr.erase(conn, org=data_org, start=body.start, end=body.end, actor=actor(principal),
                         org_id=principal.org_id, key_id=principal.key_id, device=body.device,
                         series_ids=body.series_ids)
    if receipt is None:
        raise Problem(404, f"no such device or series of {data_org}")
    return ErasurePublic.model_validate(receipt)


@router.get("/erasures", response_model=list[ErasurePublic], summary="Erasure receipts",
            responses=problem_responses(401, 403, 503))
def read_erasures(conn: ConnDep, principal: PrincipalDep) -> list[ErasurePublic]:
    org = None if principal.role == OPERATOR else _data_org(principal, None)
    return [ErasurePublic.model_validate(r) for r in gdpr.list_erasures(conn, org=org)]


@router.put("/grants/{grant_id}/minimisation", response_model=MinimisationPublic,
            summary="Location precision and k-anonymity of a grant",
            responses=problem_responses(401, 403, 404, 422, 503))
def update_minimisation(conn: ConnDep, principal: PrincipalDep, grant_id: Id, body: MinimisationUpdate
                        ) -> MinimisationPublic:
    _data_org(principal, None)
    updated = gdpr.set_grant_minimisation(conn, grant_id=grant_id, provider_org=principal.org_id,
                                          **body.model_dump())
    if updated is None:
        raise Problem(404, f"no grant {grant_id} to a product of your organisation")
    _audit(conn, principal, "gdpr.minimisation", {"grant_id": grant_id, **body.model_dump()})
    return MinimisationPublic.model_validate(updated)


@router.get("/access-report", summary="Who read a device's or series' data",
            description="Every read (and refused read) of the series from the audit log: reader, face, time, "
            "rows, grant and purpose. JSON or CSV.",
            responses={200: {"content": {"text/csv": {}}}, **problem_responses(401, 403, 404, 422, 503)})
def read_access_report(
    conn: ConnDep, principal: PrincipalDep,
    device: Annotated[str | None, Query(max_length=128)] = None,
    series_id: Annotated[list[int] | None, Query()] = None,
    start: Annotated[Instant | None, Query(description="Logged from; default 365 days ago.")] = None,
    end: Annotated[Instant | None, Query(description="Logged before; default now.")] = None,
    org: OrgQ = None,
    format: Annotated[Format, Query(description="json (default) or csv.")] = Format.json,
):
    data_org = _data_org(principal, org)
    if (device is None) == (series_id is None):
        raise Problem(422, "name a device or series_id (one of them)", title="Invalid request")
    ids = gdpr.org_series(conn, org=data_org, device=device, series_ids=series_id)
    if series_id is not None and len(ids) != len(set(series_id)):
        raise Problem(404, f"no such series of {data_org}")
    if not ids and device is not None:
        raise Problem(404, f"no device {device!r} of {data_org} with series")
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=365)
    rows = gdpr.access_report(conn, series_ids=ids, start=start, end=end)
    if format is Format.csv:
        return table_response(gdpr.ACCESS_COLUMNS, [tuple(r[c] for c in gdpr.ACCESS_COLUMNS) for r in rows],
                              fmt=format, name="access-report")
    if format is not Format.json:
        raise Problem(422, "the access report is json or csv", title="Invalid request")
    return {"org": data_org, "device": device, "series_ids": ids, "start": start, "end": end, "reads": rows}


@router.get("/retention-report", response_model=list[RetentionRunPublic],
            summary="What per-series and per-product retention deleted, when",
            responses=problem_responses(401, 403, 503))
def read_retention_report(conn: ConnDep, principal: PrincipalDep) -> list[RetentionRunPublic]:
    org = None if principal.role == OPERATOR else _data_org(principal, None)
    return [RetentionRunPublic.model_validate(r) for r in gdpr.retention_report(conn, org=org)]
