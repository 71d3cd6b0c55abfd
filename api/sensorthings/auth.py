"""Who calls the SensorThings face: the same API keys as /v1.

A key comes as `Authorization: Bearer <key>`, `X-API-Key: <key>`, or — because
GIS tools and STA clients usually offer only that — HTTP Basic with the key as
the password (any user name). The organisation comes from the key alone.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request

from api.deps import ConnDep, Unauthorized, _require
from storage.tenants import Principal, authenticate

__all__ = ["StaPrincipalDep", "StaWriterDep", "get_sta_principal"]


def _key_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    if scheme.lower() == "basic" and credentials.strip():
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("the Basic credentials are not base64 of user:key") from None
        return decoded.partition(":")[2] or None
    return request.headers.get("x-api-key")


def get_sta_principal(request: Request, conn: ConnDep) -> Principal:
    key = _key_of(request)
    if not key:
        raise Unauthorized("an API key is required: send `Authorization: Bearer <key>`, `X-API-Key: <key>` "
                           "or HTTP Basic with the key as password")
    principal = authenticate(conn, key.strip())
    if principal is None:
        raise Unauthorized("the API key is not valid (unknown, malformed or revoked)")
    return principal


StaPrincipalDep = Annotated[Principal, Depends(get_sta_principal)]


def _writer(principal: StaPrincipalDep) -> Principal:
    return _require("provider")(principal)


StaWriterDep = Annotated[Principal, Depends(_writer)]
