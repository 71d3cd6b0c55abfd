"""Dependencies shared by the routers, as `Annotated` aliases.

    ConnDep       a pooled connection for this request (DatabaseUnavailable → 503)
    SettingsDep   the Settings the app was built with
    PoolDep       the connection pool itself (health checks)

The tenant from the credential joins these when keys arrive.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, Request
from psycopg_pool import ConnectionPool

from citylab.settings import Settings
from storage.errors import map_errors

__all__ = ["ConnDep", "PoolDep", "SettingsDep", "get_connection", "get_pool", "get_settings"]


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
