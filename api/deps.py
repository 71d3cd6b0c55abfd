"""Dependencies shared by the routers, as `Annotated` aliases.

    ConnDep        a pooled connection to the primary for this request (DatabaseUnavailable → 503):
                   writes, authentication, the audit log
    ReadConnDep    a connection for this request's reads: the read replica once it has replayed
                   every commit made before the request, else the request's primary connection
                   (api.routing)
    RoutesDep      the routing itself (streams that outlive the request: exports)
    SettingsDep    the Settings the app was built with
    PoolDep        the connection pool itself (health checks, streaming exports)
    PrincipalDep   who calls: from the API key alone (401 without a valid key)
    ReaderDep      the same, or without a key an anonymous reader of open data, counted per
                   client address in the database (429 past `open_rate_limit` per window)
    AdminDep, ProviderDep, ConsumerDep
                   the same, requiring that role (admin keys hold every role; 403 otherwise)
    OperatorDep    the lab's staff (role `operator`, which no admin key holds): lab-wide views
    DynSecDep      the broker's dynamic-security client (503 when not configured)

The key comes as `Authorization: Bearer <key>` or `X-API-Key: <key>`. The
tenant is never taken from the path or the body.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

import psycopg
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from api.errors import Problem
from api.routing import DatabaseRoutes
from citylab.broker_security import DynSec
from citylab.settings import Settings
from storage.catalog import count_anonymous_request
from storage.errors import map_errors
from storage.tenants import OPERATOR, Principal, authenticate

__all__ = [
    "AdminDep",
    "ConnDep",
    "ConsumerDep",
    "DynSecDep",
    "OperatorDep",
    "PoolDep",
    "PrincipalDep",
    "ProviderDep",
    "ReadConnDep",
    "ReaderDep",
    "RoutesDep",
    "SettingsDep",
    "get_connection",
    "get_pool",
    "get_principal",
    "get_settings",
    "require_operator",
    "public_link",
]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_pool(request: Request) -> ConnectionPool:
    return request.app.state.pool


def get_connection(request: Request) -> Iterator[psycopg.Connection]:
    pool: ConnectionPool = request.app.state.pool
    # PoolTimeout (no connection within the pool's timeout) is an OperationalError:
    # map_errors turns it into DatabaseUnavailable, answered as 503.
    with map_errors("get a database connection"), pool.connection() as conn:
        yield conn


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[ConnectionPool, Depends(get_pool)]
ConnDep = Annotated[psycopg.Connection, Depends(get_connection)]


def get_routes(request: Request) -> DatabaseRoutes:
    return request.app.state.routes


RoutesDep = Annotated[DatabaseRoutes, Depends(get_routes)]


def get_read_connection(routes: RoutesDep, conn: ConnDep) -> Iterator[psycopg.Connection]:
    with map_errors("get a database connection"), routes.read(conn) as read:
        yield read


ReadConnDep = Annotated[psycopg.Connection, Depends(get_read_connection)]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer cl_...`.")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key, as an alternative header.")


class Unauthorized(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__(401, detail)
        self.headers = {"WWW-Authenticate": 'Bearer realm="citylab"'}


def get_principal(
    conn: ConnDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_header)],
) -> Principal:
    key = bearer.credentials if bearer is not None else api_key
    if not key:
        raise Unauthorized("an API key is required: send `Authorization: Bearer <key>` (see `citylab admin create-org`)")
    principal = authenticate(conn, key.strip())
    if principal is None:
        raise Unauthorized("the API key is not valid (unknown, malformed or revoked)")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


class TooManyRequests(Problem):
    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(429, detail, title="Too Many Requests")
        self.headers = {"Retry-After": str(retry_after_s)}


def get_reader(
    request: Request,
    conn: ConnDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_header)],
) -> Principal:
    """The key's principal; without a key, an anonymous reader of open data (rate-limited)."""
    if bearer is not None or api_key:
        return get_principal(conn, bearer, api_key)
    settings: Settings = request.app.state.settings
    client = request.client.host if request.client else "unknown"
    now = datetime.now(UTC)
    count = count_anonymous_request(conn, client=client, now=now, window_s=settings.open_rate_window_s)
    if count > settings.open_rate_limit:
        window = settings.open_rate_window_s
        raise TooManyRequests(
            f"more than {settings.open_rate_limit} requests without a key in {window} s from {client}; "
            "retry later or use an API key", retry_after_s=max(1, window - int(now.timestamp()) % window))
    return Principal.anonymous_from(client)


ReaderDep = Annotated[Principal, Depends(get_reader)]


def _require(role: str):
    def check(principal: PrincipalDep) -> Principal:
        if principal.role not in ("admin", role):
            raise Problem(403, f"this needs a key with role '{role}' (or 'admin'); yours has role '{principal.role}'")
        return principal

    return check


def require_operator(principal: PrincipalDep) -> Principal:
    if principal.role != OPERATOR:
        raise Problem(403, "lab-wide views are for the lab's operators (a key with role 'operator', made by "
                           f"`citylab admin create-key --role operator`); yours has role '{principal.role}'")
    return principal


AdminDep = Annotated[Principal, Depends(_require("admin"))]
OperatorDep = Annotated[Principal, Depends(require_operator)]
ProviderDep = Annotated[Principal, Depends(_require("provider"))]
ConsumerDep = Annotated[Principal, Depends(_require("consumer"))]


def get_dynsec(request: Request) -> DynSec:
    dynsec: DynSec | None = request.app.state.dynsec
    if dynsec is None:
        raise Problem(503, "the broker's dynamic security is not configured on this server "
                           "(CITYLAB_MQTT_URL and CITYLAB_DYNSEC_PASSWORD)")
    return dynsec


DynSecDep = Annotated[DynSec, Depends(get_dynsec)]


def public_link(settings: Settings, request: Request, **params: object) -> str:
    """The public URL of this request's path and query, with `params` replaced: the base
    from the settings (`CITYLAB_PUBLIC_BASE_URL`), never from the request's Host."""
    url = request.url.include_query_params(**params)
    return f"{settings.base_url}{url.path}" + (f"?{url.query}" if url.query else "")


def actor(principal: Principal) -> str:
    """How the audit log names a caller."""
    if principal.anonymous:
        return f"anonymous/{principal.client}"
    return f"{principal.org_slug}/key-{principal.key_id}"
