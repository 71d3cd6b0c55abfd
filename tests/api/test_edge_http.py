"""The API's edge over real HTTP (uvicorn, raw sockets and httpx): what a client on
the wire can send — a NUL byte, an encoded surrogate, a huge or unending body, a
forged Host — is refused or ignored as documented."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest
from stack import running_stack
from testbed import DynsecBroker, make_tenant

from citylab.settings import Settings

pytestmark = pytest.mark.slow


def _raw(api: str, request: bytes) -> bytes:
    """Send `request` as it is on a TCP connection; the response's first bytes."""
    parts = urlsplit(api)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def test_the_edge_over_real_http(testbed_settings: Settings, dynsec: DynsecBroker) -> None:
    settings = testbed_settings.model_copy(update={"public_base_url": "https://lab.example.org",
                                                   "api_max_body_bytes": 32 * 1024})
    tenant = make_tenant(settings.database_url, name="Wire Air", kind="provider")
    with running_stack(settings, dynsec) as stack:
        with httpx.Client(base_url=stack.api, headers=tenant.headers, timeout=20) as api:
            r = api.get("/v1/series?quantity=pm%00")
            assert r.status_code == 422 and r.json()["errors"][0] == {
                "in": "query", "name": "quantity", "message": "contains a NUL byte"}
            r = api.get("/v1/series?provider=%ED%A0%80")
            assert r.status_code == 422 and r.json()["errors"][0]["name"] == "provider"
            r = api.post("/v1/devices", headers={"Content-Type": "application/json"},
                         content=b'{"device": "w-1", "sensors": [{"quantity": "t\\u0000"}]}')
            assert r.status_code == 422 and r.json()["errors"][0]["name"] == "sensors.0.quantity"
            r = api.post("/v1/devices", json={"device": "w-1", "junk": "x" * 100_000})
            assert r.status_code == 413
            created = api.post("/v1/devices", json={"device": "w-1", "sensors": [{"quantity": q} for q in "abc"]})
            assert created.status_code == 201, created.text
            r = api.get("/v1/series", params={"limit": 1}, headers={"Host": "attacker.example:666"})
            assert r.status_code == 200 and r.headers["link"].startswith("<https://lab.example.org/v1/series?")
            assert api.get("/v1/series", params={"cursor": "1e400"}).status_code == 400
        # a chunked body that never stops within the limit: refused while it is read
        head = (f"POST /v1/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tenant.key}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
        chunk = b"x" * 8192
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
        answer = _raw(stack.api, head + body)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        # a console asset name no file can have, unauthenticated
        answer = _raw(stack.api, b"GET /console/static/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 404"), answer[:200]
        answer = _raw(stack.api, b"GET /console/static/%00 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 404"), answer[:200]
