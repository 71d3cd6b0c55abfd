"""Data products and procurement: the catalogue, access requests, grants and quality.

    POST  /v1/products                     publish a product of your series (provider)
    GET   /v1/products                     the catalogue (any key; without a key the open products)
    GET   /v1/products/{id}                one product
    PATCH /v1/products/{id}                list it in the DCAT-AP catalogue, publish it as open (provider)
    GET   /v1/products/{id}/quality        quality over the last 7 and 30 days, from the data
    POST /v1/products/{id}/requests        ask for access (consumer)
    GET  /v1/grants                        your requests and grants, as consumer or provider, with usage
    GET  /v1/grants/{id}
    POST /v1/grants/{id}/approve           (provider of the product) optionally until expires_at
    POST /v1/grants/{id}/reject
    POST /v1/grants/{id}/revoke
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ConnDep, ConsumerDep, PrincipalDep, ProviderDep, ReaderDep, SettingsDep, Unauthorized, actor
from api.errors import Problem
from api.params import Instant
from api.privacy import holds_personal
from api.routes import problem_responses
from storage import gdpr, products
from storage.audit import record_change
from storage.tenants import Principal

Licence = Literal[tuple(products.LICENCES)]  # type: ignore[valid-type]

router = APIRouter(tags=["products"])

Id = Annotated[int, Path(ge=1, le=2**62)]


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    licence: Licence
    terms: str = Field(default="", max_length=10_000)
    price_month: Decimal | None = Field(default=None, ge=0, le=Decimal("9999999999.99"), decimal_places=2,
                                        description="Monthly price; null means free.")
    currency: str = Field(default="NOK", pattern=r"^[A-Z]{3}$")
    series_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(min_length=1, max_length=10_000)
    listed: bool = Field(default=False, description="Listed in the lab's DCAT-AP catalogue (/catalog).")
    open: bool = Field(default=False, description="Open data: readable without a key. Needs an open licence "
                       "and no price.")
    title_nb: str = Field(default="", max_length=200, description="Title in Norwegian Bokmål.")
    description_nb: str = Field(default="", max_length=10_000, description="Description in Norwegian Bokmål.")
    keywords: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default=[], max_length=50)


class PublicationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    listed: bool | None = Field(default=None, description="List in (true) or remove from (false) the catalogue.")
    open: bool | None = Field(default=None, description="Publish as open data (true) or close (false).")


class ProductPublic(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    id: int
    provider: str
    title: str
    description: str
    licence: str
    terms: str
    price_month: Decimal | None
    currency: str
    created_at: datetime
    series_ids: list[int]
    listed: bool
    open: bool
    title_nb: str
    description_nb: str
    keywords: list[str]


class QualityWindowPublic(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    days: int
    completeness: float | None = Field(description="Readings / expected from the declared intervals (0..1).")
    freshness_s: float | None = Field(description="Seconds since the newest reading of the stalest series.")
    anomaly_rate: float | None = Field(description="Anomalies / readings.")
    uptime: float | None = Field(description="Share of hours with at least one reading (0..1).")
    readings: int
    anomalies: int


class QualityPublic(BaseModel):
    product_id: int
    computed_at: datetime
    windows: list[QualityWindowPublic]


class AccessRequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(default="", max_length=2000, description="Purpose of use, for the provider.")
    purpose: str | None = Field(default=None, max_length=64, description="The DPV purpose of use (e.g. "
                                "AcademicResearch); required for a product holding personal data. Reads "
                                "through the grant state it (see docs/gdpr.md).")


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_at: Instant | None = Field(default=None, description="When the grant ends; null: until revoked.")


class GrantPublic(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    id: int
    product_id: int
    consumer: str
    status: Literal["requested", "active", "rejected", "revoked"]
    message: str
    requested_at: datetime
    decided_at: datetime | None
    expires_at: datetime | None
    requests: int = Field(description="Data requests served through this grant.")
    rows_served: int = Field(description="Rows served through this grant.")


def _audit(conn, principal: Principal, action: str, owner_org: int, detail: dict) -> None:
    record_change(conn, actor=actor(principal), action=action, org_id=principal.org_id, key_id=principal.key_id,
                  owner_org=owner_org, detail=detail)


def _product_or_404(conn, product_id: int, principal: Principal | None = None) -> products.DataProduct:
    """The product; without a key only an open one (401 for any other, existing or not)."""
    found = products.get_product(conn, product_id)
    if principal is not None and principal.anonymous and (found is None or not found.open):
        raise Unauthorized(f"data product {product_id} is not open data: it needs an API key")
    if found is None:
        raise Problem(404, f"no data product with id {product_id}")
    return found


@router.post("/products", response_model=ProductPublic, status_code=201, summary="Publish a data product",
             responses=problem_responses(401, 403, 422, 503))
def create_product(conn: ConnDep, principal: ProviderDep, body: ProductCreate) -> ProductPublic:
    if body.open and holds_personal(conn, body.series_ids):
        raise Problem(422, "personal data cannot be open data: these series are classified personal or "
                           "pseudonymous (docs/gdpr.md)", title="Invalid request")
    try:
        product = products.create_product(
            conn, org_id=principal.org_id, org_slug=principal.org_slug, title=body.title,
            description=body.description, licence=body.licence, terms=body.terms, price_month=body.price_month,
            currency=body.currency, series_ids=body.series_ids, listed=body.listed, open=body.open,
            title_nb=body.title_nb, description_nb=body.description_nb, keywords=body.keywords,
        )
    except ValueError as exc:
        raise Problem(422, str(exc), title="Invalid request") from None
    _audit(conn, principal, "product.create", principal.org_id, {"product_id": product.id, "series": product.series_ids})
    return ProductPublic.model_validate(product)


@router.get("/products", response_model=list[ProductPublic], summary="The data product catalogue",
            description="Every published product (metadata only; the data needs a grant unless the product is "
            "open), by id after `cursor`. Without a key: the open products.",
            responses=problem_responses(400, 401, 422, 429, 503))
def read_products(
    conn: ConnDep, principal: ReaderDep,
    provider: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ProductPublic]:
    return [ProductPublic.model_validate(p)
            for p in products.list_products(conn, provider=provider, after=cursor, limit=limit,
                                            open_only=principal.anonymous)]


@router.get("/products/{product_id}", response_model=ProductPublic, summary="One data product",
            responses=problem_responses(401, 404, 422, 429, 503))
def read_product(conn: ConnDep, principal: ReaderDep, product_id: Id) -> ProductPublic:
    return ProductPublic.model_validate(_product_or_404(conn, product_id, principal))


@router.patch("/products/{product_id}", response_model=ProductPublic, summary="List or open a data product",
              description="`listed`: the product appears in the lab's DCAT-AP catalogue (/catalog). `open`: its "
              "data is readable without a key (an open licence and no price are required).",
              responses=problem_responses(401, 403, 404, 422, 503))
def update_publication(conn: ConnDep, principal: ProviderDep, product_id: Id, body: PublicationUpdate) -> ProductPublic:
    current = products.get_product(conn, product_id)
    if body.open and current is not None and holds_personal(conn, current.series_ids):
        raise Problem(422, f"data product {product_id} holds personal data: it cannot be open data (docs/gdpr.md)",
                      title="Invalid request")
    try:
        updated = products.set_publication(conn, product_id=product_id, provider_org=principal.org_id,
                                           listed=body.listed, open=body.open)
    except ValueError as exc:
        raise Problem(422, str(exc), title="Invalid request") from None
    if updated is None:
        raise Problem(404, f"your organisation has no data product with id {product_id}")
    _audit(conn, principal, "product.publication", principal.org_id,
           {"product_id": product_id, "listed": updated.listed, "open": updated.open})
    return ProductPublic.model_validate(updated)


@router.get("/products/{product_id}/quality", response_model=QualityPublic, summary="Quality report",
            description="Completeness against the declared intervals, freshness, anomaly rate and uptime over the "
            "last 7 and 30 days, computed from the stored data.",
            responses=problem_responses(401, 404, 422, 429, 503))
def read_quality(conn: ConnDep, principal: ReaderDep, settings: SettingsDep, product_id: Id) -> QualityPublic:
    _product_or_404(conn, product_id, principal)
    now = datetime.now(UTC)
    width = min(settings.window_widths_s)
    windows = [products.product_quality(conn, product_id, days=d, width_s=width, now=now) for d in (7, 30)]
    return QualityPublic(product_id=product_id, computed_at=now,
                         windows=[QualityWindowPublic.model_validate(w) for w in windows])


@router.post("/products/{product_id}/requests", response_model=GrantPublic, status_code=201,
             summary="Request access to a product", responses=problem_responses(401, 403, 404, 422, 503))
def request_access(conn: ConnDep, principal: ConsumerDep, product_id: Id,
                   body: AccessRequestCreate | None = None) -> GrantPublic:
    product = _product_or_404(conn, product_id)
    purpose = body.purpose if body else None
    if purpose is not None and purpose not in gdpr.PURPOSES:
        raise Problem(422, f"purpose must be a DPV purpose: one of {gdpr.PURPOSES}", title="Invalid request")
    if purpose is None and holds_personal(conn, product.series_ids):
        raise Problem(422, f"data product {product_id} holds personal data: name the purpose of use "
                           f"(`purpose`, one of {gdpr.PURPOSES})", title="Invalid request")
    grant = products.request_access(conn, product_id=product_id, consumer_org=principal.org_id,
                                    message=body.message if body else "")
    gdpr.set_grant_purpose(conn, grant_id=grant.id, purpose=purpose)
    _audit(conn, principal, "grant.request", product.org_id, {"grant_id": grant.id, "product_id": product_id,
                                                              "purpose": purpose})
    return GrantPublic.model_validate(grant)


@router.get("/grants", response_model=list[GrantPublic], summary="Your requests and grants",
            description="Where your organisation is the consumer or the provider, newest first, with usage.",
            responses=problem_responses(401, 503))
def read_grants(conn: ConnDep, principal: PrincipalDep) -> list[GrantPublic]:
    return [GrantPublic.model_validate(g) for g in products.list_grants(conn, org_id=principal.org_id)]


def _grant_or_404(conn, principal: Principal, grant_id: int) -> products.AccessGrant:
    grant = products.get_grant(conn, grant_id)
    if grant is None or principal.org_id not in (grant.consumer_org, grant.provider_org):
        raise Problem(404, f"no grant with id {grant_id} of your organisation")
    return grant


@router.get("/grants/{grant_id}", response_model=GrantPublic, summary="One request or grant",
            responses=problem_responses(401, 404, 422, 503))
def read_grant(conn: ConnDep, principal: PrincipalDep, grant_id: Id) -> GrantPublic:
    return GrantPublic.model_validate(_grant_or_404(conn, principal, grant_id))


def _decide(conn, principal: Principal, grant_id: int, *, approve: bool, expires_at: datetime | None) -> GrantPublic:
    grant = _grant_or_404(conn, principal, grant_id)
    if grant.provider_org != principal.org_id:
        raise Problem(403, "only the product's provider decides on a request")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise Problem(422, "expires_at must be in the future", title="Invalid request")
    decided = products.decide_grant(conn, grant_id=grant_id, provider_org=principal.org_id, approve=approve,
                                    expires_at=expires_at)
    if decided is None:
        raise Problem(409, f"grant {grant_id} is {grant.status}, not requested")
    _audit(conn, principal, "grant.approve" if approve else "grant.reject", principal.org_id,
           {"grant_id": grant_id, "consumer": grant.consumer, "expires_at": expires_at})
    return GrantPublic.model_validate(decided)


@router.post("/grants/{grant_id}/approve", response_model=GrantPublic, summary="Approve a request",
             responses=problem_responses(401, 403, 404, 409, 422, 503))
def approve_grant(conn: ConnDep, principal: ProviderDep, grant_id: Id, body: Decision | None = None) -> GrantPublic:
    return _decide(conn, principal, grant_id, approve=True, expires_at=body.expires_at if body else None)


@router.post("/grants/{grant_id}/reject", response_model=GrantPublic, summary="Reject a request",
             responses=problem_responses(401, 403, 404, 409, 422, 503))
def reject_grant(conn: ConnDep, principal: ProviderDep, grant_id: Id) -> GrantPublic:
    return _decide(conn, principal, grant_id, approve=False, expires_at=None)


@router.post("/grants/{grant_id}/revoke", response_model=GrantPublic, summary="Revoke a grant",
             responses=problem_responses(401, 403, 404, 409, 422, 503))
def revoke_grant(conn: ConnDep, principal: ProviderDep, grant_id: Id) -> GrantPublic:
    grant = _grant_or_404(conn, principal, grant_id)
    if grant.provider_org != principal.org_id:
        raise Problem(403, "only the product's provider revokes a grant")
    revoked = products.revoke_grant(conn, grant_id=grant_id, provider_org=principal.org_id)
    if revoked is None:
        raise Problem(409, f"grant {grant_id} is {grant.status}, not active")
    _audit(conn, principal, "grant.revoke", principal.org_id, {"grant_id": grant_id, "consumer": grant.consumer})
    return GrantPublic.model_validate(revoked)
