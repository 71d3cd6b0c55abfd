"""The API's edge over a real database: NUL bytes and unpaired surrogates anywhere,
cursors, console asset paths, body sizes, unknown fields, and links built from the
settings rather than from `Host`."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from testbed import Tenant, make_tenant

from api import create_app
from citylab.settings import Settings

# as they travel in a query string: NUL, an encoded surrogate (CESU-8), a byte that is not UTF-8
BAD = {"nul": "a%00b", "surrogate": "a%ED%A0%80b", "not-utf8": "a%FFb"}


@pytest.fixture
def tenant(database: str) -> Tenant:
    return make_tenant(database, name="Edge Air", kind="provider")


@pytest.fixture
def client(testbed_settings: Settings) -> Iterator[TestClient]:
    settings = testbed_settings.model_copy(update={"public_base_url": "https://lab.example.org/",
                                                   "api_max_body_bytes": 64 * 1024})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _query_operations(client: TestClient) -> list[tuple[str, str, str]]:
    """(method, path with ids filled in, query parameter) for every query parameter of the API."""
    spec = client.get("/openapi.json").json()
    found = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            for param in op.get("parameters", []):
                if param["in"] == "query":
                    found.append((method, path.replace("{series_id}", "1").replace("{device}", "d-1")
                                  .replace("{product_id}", "1").replace("{grant_id}", "1")
                                  .replace("{key_id}", "1"), param["name"]))
    return found


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_bad_string_in_any_query_parameter_is_a_422_naming_it(client: TestClient, tenant: Tenant,
                                                                 kind: str) -> None:
    operations = _query_operations(client)
    assert len(operations) >= 30
    for method, path, name in operations:
        r = client.request(method.upper(), f"{path}?{name}={BAD[kind]}", headers=tenant.headers)
        assert r.status_code == 422, (method, path, name, r.status_code, r.text)
        body = r.json()
        assert r.headers["content-type"] == "application/problem+json"
        assert body["errors"][0]["in"] == "query" and body["errors"][0]["name"] == name, body
        assert name in body["detail"]


def test_a_bad_string_anywhere_in_a_json_body_is_a_422_naming_the_field(client: TestClient,
                                                                         tenant: Tenant) -> None:
    cases = [
        ("/v1/devices", {"device": "x\u0000"}, "device"),
        ("/v1/devices", {"device": "ok-1", "sensors": [{"quantity": "pm2_5", "unit": "ug\ud800"}]}, "sensors.0.unit"),
        ("/v1/devices", {"device": "ok-1", "lora": {"dev_eui": "0011223344556677", "channels": {"1\x00": "t"}}},
         "lora.channels.1\x00"),
        ("/v1/products", {"title": "\udfff", "licence": "CC0-1.0", "series_ids": [1]}, "title"),
        ("/v1/keys", {"role": "consumer", "label": "\x00"}, "label"),
        ("/v1/products/1/requests", {"message": "hi\x00"}, "message"),
    ]
    for path, body, name in cases:
        # json.dumps escapes the surrogates (\\ud800) as every JSON encoder may
        r = client.post(path, headers={**tenant.headers, "Content-Type": "application/json"},
                        content=json.dumps(body).encode())
        assert r.status_code == 422, (path, r.text)
        assert r.json()["errors"][0] == {"in": "body", "name": name, "message": r.json()["errors"][0]["message"]}
        assert "NUL" in r.json()["detail"] or "surrogate" in r.json()["detail"]
    # raw JSON text with the escapes, as any client may send it, with or without a content type
    raw = b'{"device": "ok-2", "sensors": [{"quantity": "\\ud83d"}]}'
    for content_type in ("application/json", "application/json; charset=utf-8", "application/merge-patch+json",
                         None):
        headers = {**tenant.headers, **({"Content-Type": content_type} if content_type else {})}
        r = client.post("/v1/devices", headers=headers, content=raw)
        assert r.status_code == 422 and r.json()["errors"][0]["name"] == "sensors.0.quantity", (content_type, r.text)
    # a correct pair is one character, not a surrogate: it passes the edge and is stored
    r = client.post("/v1/keys", headers={**tenant.headers, "Content-Type": "application/json"},
                    content=b'{"role": "consumer", "label": "air \\ud83d\\ude00"}')
    assert r.status_code == 201 and r.json()["label"] == "air \U0001f600", r.text


def test_bodies_have_a_size_limit_and_models_forbid_unknown_fields(client: TestClient, tenant: Tenant) -> None:
    big = {"device": "ok-3", "padding": "x" * 5_000_000}
    r = client.post("/v1/devices", headers=tenant.headers, json=big)
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        yield b'{"device": "ok-3", "padding": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    r = client.post("/v1/devices", headers={**tenant.headers, "Content-Type": "application/json"}, content=chunks())
    assert r.status_code == 413
    for path, body in [("/v1/devices", {"device": "ok-4", "org": "someone-else"}),
                       ("/v1/devices", {"device": "ok-4", "sensors": [{"quantity": "t", "owner": 1}]}),
                       ("/v1/devices", {"device": "ok-4", "location": {"lat": 1, "lon": 2, "alt": 3}}),
                       ("/v1/keys", {"role": "consumer", "org_id": 1})]:
        r = client.post(path, headers=tenant.headers, json=body)
        assert r.status_code == 422 and "extra" in r.text.lower(), (path, r.text)
    deep = b"[" * 50_000 + b"]" * 50_000
    r = client.post("/v1/keys", headers={**tenant.headers, "Content-Type": "application/json"}, content=deep[:60_000])
    assert r.status_code == 422
    assert client.get("/v1/devices", headers=tenant.headers).json() == []


def _cursor(data: object) -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_cursors_are_validated(client: TestClient, tenant: Tenant, database: str) -> None:
    params = {"start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"}
    import psycopg

    from storage.registry import ensure_series, register_device

    with psycopg.connect(database, autocommit=True) as conn:
        register_device(conn, org=tenant.slug, device="cur-2")
        sid = ensure_series(conn, [(tenant.slug, "cur-2", "t", None)])[(tenant.slug, "cur-2", "t")]
    bad = ['{"t": Infinity, "k": 0}', '{"t": 1e400, "k": 0}', '{"t": NaN, "k": 0}', '{"t": -Infinity, "k": 0}',
           {"t": 1.5, "k": 0}, {"t": True, "k": 0}, {"t": "1", "k": 0}, {"t": 1, "k": -1}, {"t": 2**70, "k": 0},
           {"t": 1, "k": 2**70}, {"t": 1}, {"t": 1, "k": 0, "x": 1}, [1, 2], "null", '{"t": 1' ,
           "9" * 5000]
    for value in bad:
        r = client.get(f"/v1/series/{sid}/readings", headers=tenant.headers, params={**params, "cursor": _cursor(value)})
        assert r.status_code == 400, (value, r.status_code, r.text)
        assert r.json()["detail"].startswith("cursor") and r.json()["title"] == "Invalid cursor", r.text
    for raw in ["garbage!", "%%%", "e30"]:
        r = client.get(f"/v1/series/{sid}/readings", headers=tenant.headers, params={**params, "cursor": raw})
        assert r.status_code == 400, (raw, r.text)
    # the catalogues' integer cursors: a bad one is a 400 as well
    for path in ("/v1/series", "/v1/products"):
        for raw in ("Infinity", "1e400", "-1", "NaN", "1.5", "9" * 30):
            r = client.get(path, headers=tenant.headers, params={"cursor": raw})
            assert r.status_code == 400 and r.json()["errors"][0]["name"] == "cursor", (path, raw, r.text)
        r = client.get(path, headers=tenant.headers, params={"cursor": "x", "limit": "0"})
        assert r.status_code == 422  # more than the cursor is wrong: the usual validation answer
    # a cursor this API gave out, but for another range
    far = _cursor({"t": 0, "k": 0})
    r = client.get(f"/v1/series/{sid}/readings", headers=tenant.headers, params={**params, "cursor": far})
    assert r.status_code == 400 and "outside" in r.json()["detail"]


def test_console_asset_paths_that_cannot_exist_are_404(client: TestClient) -> None:
    for path in ["/console/static/%00", "/console/static/a%00b.js", "/console/static/" + "a" * 5000,
                 "/console/static/" + "/".join(["b" * 200] * 30), "/console/static/%ED%A0%80",
                 "/console/static/../../../etc/passwd", "/console/static/..%2F..%2Fapp.py"]:
        r = client.get(path)
        assert r.status_code == 404, (path[:60], r.status_code, r.text[:200])
        assert r.headers["content-type"] == "application/problem+json"
    # and the assets that exist are still served
    from api.console.routes import STATIC_DIR

    asset = next(p for p in (STATIC_DIR / "assets").iterdir() if p.suffix == ".js")
    r = client.get(f"/console/static/assets/{asset.name}")
    assert r.status_code == 200 and r.content == asset.read_bytes()


def test_links_come_from_the_settings_not_from_host(client: TestClient, tenant: Tenant, database: str) -> None:
    import psycopg

    from storage.registry import ensure_series, register_device

    with psycopg.connect(database, autocommit=True) as conn:
        register_device(conn, org=tenant.slug, device="link-1")
        ensure_series(conn, [(tenant.slug, "link-1", q, None) for q in ("a", "b", "c")])
    r = client.get("/v1/series", headers={**tenant.headers, "Host": "evil.example"}, params={"limit": 2})
    assert r.status_code == 200 and len(r.json()) == 2
    link = r.headers["Link"]
    assert link.startswith("<https://lab.example.org/v1/series?") and "evil" not in link, link
    assert "limit=2" in link and f"cursor={r.json()[-1]['id']}" in link
    nxt = httpx.URL(link[1:link.index(">")])
    page = client.get(nxt.path, headers=tenant.headers, params=dict(nxt.params))
    assert [s["quantity"] for s in page.json()] == ["c"]
