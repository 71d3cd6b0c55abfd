"""What every NGSI-LD request carries, as FastAPI dependencies.

    CallerDep      the principal (API key) and the tenant it addresses: the
                   `NGSILD-Tenant` header may name only an organisation the
                   key may read (its own, or one whose series its grants
                   cover); any other name is 404 NonexistentTenant, so the
                   names of other tenants leak nothing
    ContextDep     the request's @context from its Link header (GET) with the
                   core context; dereferenced under the outbound policy
    AcceptDep      the media type of the answer (application/json,
                   application/ld+json or application/geo+json; else 406)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from api.deps import ConnDep, PrincipalDep
from api.ngsild.context import Context, ContextResolver, parse_link_header
from api.ngsild.errors import NgsiLdError
from api.errors import Problem
from api.ngsild.vocabulary import conversions
from storage.ngsild import Vocabulary, readable_tenants
from storage.tenants import Principal

__all__ = ["AcceptDep", "Caller", "CallerDep", "ContextDep", "vocabulary"]

JSON = "application/json"
JSONLD = "application/ld+json"
GEOJSON = "application/geo+json"


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    tenant: str | None     # None: every organisation the key may read

    @property
    def org_id(self) -> int:
        return self.principal.org_id

    @property
    def org_slug(self) -> str:
        return self.principal.org_slug


def get_caller(
    conn: ConnDep,
    principal: PrincipalDep,
    tenant: Annotated[str | None, Header(alias="NGSILD-Tenant", max_length=64)] = None,
) -> Caller:
    if tenant is not None:
        if tenant not in readable_tenants(conn, org_id=principal.org_id, org_slug=principal.org_slug):
            raise NgsiLdError("NonexistentTenant", f"no tenant {tenant!r} that your API key may read")
    return Caller(principal, tenant)


CallerDep = Annotated[Caller, Depends(get_caller)]


def resolver_of(request: Request) -> ContextResolver:
    return request.app.state.ngsild_contexts


def get_context(request: Request, link: Annotated[str | None, Header()] = None) -> Context:
    return Context.of(resolver_of(request), parse_link_header(link))


ContextDep = Annotated[Context, Depends(get_context)]


def get_accept(accept: Annotated[str | None, Header()] = None) -> str:
    """Clause 6.3.6: application/json (default), application/ld+json, application/geo+json."""
    if not accept:
        return JSON
    best: tuple[float, str] | None = None
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        weight = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    weight = float(param[2:])
                except ValueError:
                    weight = 0.0
        media = media.lower()
        if media in ("*/*", "application/*"):
            media = JSON
        if media in (JSON, JSONLD, GEOJSON) and weight > 0 and (best is None or weight > best[0]):
            best = (weight, media)
    if best is None:
        raise Problem(406, f"cannot answer in {accept!r}: this API answers application/json, "
                           "application/ld+json or application/geo+json")
    return best[1]


AcceptDep = Annotated[str, Depends(get_accept)]


def vocabulary() -> Vocabulary:
    return Vocabulary(*conversions())
