"""GET /v1/audit: the audit log as your organisation may see it.

The rows your organisation caused (its reads, its administrative changes) and
the rows about its data and resources (who read your series, requests for your
products), newest first. Admin and provider keys. `scope=lab`: every row of the
lab, for the lab's operators (role `operator`) only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from api.deps import ConnDep, PrincipalDep, require_operator
from api.errors import Problem
from api.params import Instant, resolve_range
from api.routes import problem_responses
from storage.audit import list_audit

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditPublic(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)
    id: int
    at: datetime
    actor: str
    action: str
    org_id: int | None
    key_id: int | None
    owner_org: int | None
    series_id: int | None
    time_start: datetime | None
    time_end: datetime | None
    rows: int | None
    detail: dict[str, Any]


@router.get("", response_model=list[AuditPublic], summary="Audit log",
            description="Reads (who, which series, time range, rows) and administrative changes by or about your "
            "organisation in [start, end) (default the last 30 days), newest first; page with `before` = the "
            "last id. `scope=lab`: the whole lab's log, for keys with role `operator` only.",
            responses=problem_responses(401, 403, 422, 503))
def read_audit(
    conn: ConnDep, principal: PrincipalDep,
    start: Annotated[Instant | None, Query()] = None,
    end: Annotated[Instant | None, Query()] = None,
    action: Annotated[str | None, Query(max_length=64, examples=["export.readings"])] = None,
    series_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    scope: Annotated[Literal["organisation", "lab"], Query(description="organisation (default) or lab.")]
    = "organisation",
) -> list[AuditPublic]:
    if scope == "lab":
        require_operator(principal)
    elif principal.role not in ("admin", "provider", "operator"):
        raise Problem(403, "the audit log needs an admin, provider or operator key")
    span = resolve_range(start, end, default=timedelta(days=30))
    rows = list_audit(conn, org_id=None if scope == "lab" else principal.org_id, action=action, series_id=series_id, start=span.start,
                      end=span.end, before=before, limit=limit)
    return [AuditPublic.model_validate(r) for r in rows]
