"""Who may read which series, and the record of every read.

An organisation reads its own devices' series and those of its active grants
(`storage.products.READABLE_SERIES`). A series it may not read answers 404,
exactly like a series that does not exist, so ids of other tenants' series
leak nothing. A caller without a key reads the open products' series only; any
other series answers 401 (a key is needed), whether it exists or not. Every data
read is written to the audit log (one row per series, with range and rows; an
anonymous read as `anonymous/<client address>`) and metered on the grant it went
through. A series holding personal data read through a grant must be read within
the grant's purpose (api.privacy): outside it the answer is 403, and audited.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from api.deps import Unauthorized, actor
from api.errors import Problem
from api.privacy import purpose_refusals, refusal_detail
from storage import queries
from storage.audit import DataRead, record_reads
from storage.products import grants_covering, meter_usage, readable_series
from storage.tenants import Principal

__all__ = ["account", "readable", "series_or_404"]


def readable(conn: psycopg.Connection, principal: Principal) -> set[int]:
    return readable_series(conn, org_id=principal.org_id, org_slug=principal.org_slug)


def series_or_404(
    conn: psycopg.Connection, principal: Principal, series_id: int, *, action: str = "read"
) -> queries.SeriesInfo:
    """The series when the caller may read it, within the purpose of its grant (403 outside it)."""
    found = queries.get_series(conn, series_id)
    if found is None or series_id not in readable(conn, principal):
        if principal.anonymous:
            raise Unauthorized(f"series {series_id} is not open data: it needs an API key")
        raise Problem(404, f"no series with id {series_id} that your organisation may read")
    if purpose_refusals(conn, principal, [series_id], action=action):
        raise Problem(403, refusal_detail(series_id))
    return found


def account(
    conn: psycopg.Connection, principal: Principal, *, action: str, reads: list[DataRead],
    start: datetime | None, end: datetime | None,
) -> None:
    """Audit the reads and meter them on the grants they went through."""
    if not reads:
        return
    if principal.anonymous:
        record_reads(conn, actor=actor(principal), action=action, org_id=None, key_id=None, reads=reads,
                     start=start, end=end)
        return
    record_reads(conn, actor=actor(principal), action=action, org_id=principal.org_id, key_id=principal.key_id,
                 reads=reads, start=start, end=end)
    grants = grants_covering(conn, consumer_org=principal.org_id, series_ids=[r.series_id for r in reads])
    usage: dict[int, int] = {}
    for read in reads:
        grant = grants.get(read.series_id)
        if grant is not None:
            usage[grant] = usage.get(grant, 0) + read.rows
    meter_usage(conn, usage)
