"""Your organisation and its API keys.

    GET  /v1/orgs/me              the caller's organisation and key
    PUT  /v1/orgs/me/profile      what the DCAT-AP catalogue says of it: organisation number, contact (admin)
    GET  /v1/keys                 the organisation's keys (admin)
    POST /v1/keys                 a new key, shown once (admin)
    POST /v1/keys/{key_id}/revoke revoke a key (admin)
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AdminDep, ConnDep, PrincipalDep, actor
from api.errors import Problem
from api.routes import problem_responses
from storage import catalog, tenants
from storage.audit import record_change

router = APIRouter(tags=["organisations"])

Role = Literal["admin", "provider", "consumer", "operator"]
# operator keys (the lab's staff) are made by `citylab admin create-key --role operator` only
GrantableRole = Literal["admin", "provider", "consumer"]


class OrgPublic(BaseModel):
    model_config = ConfigDict(frozen=True)
    org_id: int
    slug: str = Field(description="Topic-safe name: devices publish under lab/<slug>/<device>/.")
    name: str
    kind: Literal["city", "provider", "research"]
    role: Role = Field(description="The role of the key used for this request.")
    key_id: int


class OrgProfile(BaseModel):
    """What the lab's DCAT-AP catalogue says of an organisation as publisher."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)
    org_number: str | None = Field(default=None, pattern=r"^[0-9]{9}$",
                                   description="National organisation number (Norway: nine digits).")
    contact_email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$", max_length=200)
    homepage: str | None = Field(default=None, pattern=r"^https?://", max_length=500)


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: GrantableRole = Field(description="admin, provider or consumer; operator keys come from the command line.")
    label: str = Field(default="", max_length=200)


class KeyPublic(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    id: int
    prefix: str
    role: Role
    label: str
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    api_key: str = Field(description="The key itself: shown this once, stored only as a hash.")


@router.get("/orgs/me", response_model=OrgPublic, summary="Your organisation",
            responses=problem_responses(401, 503))
def read_my_org(conn: ConnDep, principal: PrincipalDep) -> OrgPublic:
    org = tenants.get_org(conn, principal.org_id)
    assert org is not None
    return OrgPublic(org_id=org.id, slug=org.slug, name=org.name, kind=org.kind, role=principal.role,
                     key_id=principal.key_id)


@router.put("/orgs/me/profile", response_model=OrgProfile, summary="Your organisation as publisher",
            description="The organisation number and contact point the DCAT-AP catalogue gives for your products.",
            responses=problem_responses(401, 403, 422, 503))
def update_my_profile(conn: ConnDep, principal: AdminDep, body: OrgProfile) -> OrgProfile:
    profile = catalog.set_org_profile(conn, org_id=principal.org_id, org_number=body.org_number,
                                      contact_email=body.contact_email, homepage=body.homepage)
    record_change(conn, actor=actor(principal), action="org.profile", org_id=principal.org_id,
                  key_id=principal.key_id, owner_org=principal.org_id, detail=body.model_dump())
    return OrgProfile.model_validate(profile)


@router.get("/keys", response_model=list[KeyPublic], summary="Your organisation's API keys",
            responses=problem_responses(401, 403, 503))
def read_keys(conn: ConnDep, principal: AdminDep) -> list[KeyPublic]:
    return [KeyPublic.model_validate(k) for k in tenants.list_keys(conn, org_id=principal.org_id)]


@router.post("/keys", response_model=KeyCreated, status_code=201, summary="Create an API key",
             description="A new key of your organisation with the given role; the key is in the answer only.",
             responses=problem_responses(401, 403, 422, 503))
def create_key(conn: ConnDep, principal: AdminDep, body: KeyCreate) -> KeyCreated:
    key, secret = tenants.create_key(conn, org_id=principal.org_id, role=body.role, label=body.label)
    record_change(conn, actor=actor(principal), action="key.create", org_id=principal.org_id,
                  key_id=principal.key_id, owner_org=principal.org_id, detail={"key_id": key.id, "role": key.role})
    return KeyCreated(**KeyPublic.model_validate(key).model_dump(), api_key=secret)


@router.post("/keys/{key_id}/revoke", response_model=KeyPublic, summary="Revoke an API key",
             responses=problem_responses(401, 403, 404, 422, 503))
def revoke_key(conn: ConnDep, principal: AdminDep,
               key_id: Annotated[int, Path(ge=1, le=2**62)]) -> KeyPublic:
    key = tenants.revoke_key(conn, org_id=principal.org_id, key_id=key_id)
    if key is None:
        raise Problem(404, f"your organisation has no key with id {key_id}")
    record_change(conn, actor=actor(principal), action="key.revoke", org_id=principal.org_id,
                  key_id=principal.key_id, owner_org=principal.org_id, detail={"key_id": key_id})
    return KeyPublic.model_validate(key)
