"""SensorThings writes (not yet available): every POST answers 501."""

from __future__ import annotations

from api.errors import Problem

__all__ = ["create"]


def create(app, conn, principal, *, base: str, path: str, body: object):
    raise Problem(501, f"creating {path} is not supported by this server")
