"""The two-tenant matrix, keys and roles, cursors, exports, grants and quality over a real database.

Every endpoint of the OpenAPI document is called with organisation B's key on
organisation A's resources: no answer carries A's data, and no write changes it.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import psycopg
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from testbed import Tenant, add_key, make_tenant

from api import create_app
from citylab.settings import Settings

T0 = datetime(2025, 3, 1, tzinfo=UTC)
SENSORS = [{"quantity": "pm2_5", "unit": "ug/m3", "interval_s": 10, "low": 0, "high": 1000}]


def _onboard(client: TestClient, tenant: Tenant, device: str) -> dict:
    r = client.post("/v1/devices", headers=tenant.headers,
                    json={"device": device, "sensors": SENSORS, "location": {"lat": 58.97, "lon": 5.73}})
    assert r.status_code == 201, r.text
    return r.json()


def _readings(url: str, series_id: int, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO readings (time, series_id, value)"
            " SELECT %s + g * interval '10 seconds', %s, g FROM generate_series(0, %s - 1) g",
            (T0, series_id, n),
        )


@pytest.fixture
def world(testbed_app: TestClient, testbed_settings: Settings):
    url = testbed_settings.database_url
    a = make_tenant(url, name="Alpha Air", kind="provider")
    b = make_tenant(url, name="Beta Noise", kind="provider")
    city = make_tenant(url, name="Stavanger kommune", kind="city")
    _onboard(testbed_app, a, "alpha-1")
    _onboard(testbed_app, b, "beta-1")
    series_a = testbed_app.get("/v1/series", headers=a.headers).json()[0]["id"]
    _readings(url, series_a, 1000)
    product = testbed_app.post("/v1/products", headers=a.headers, json={
        "title": "Alpha air", "licence": "NLOD-2.0", "price_month": "500.00", "series_ids": [series_a]}).json()
    grant = testbed_app.post(f"/v1/products/{product['id']}/requests", headers=city.headers, json={}).json()
    return testbed_app, a, b, city, series_a, product, grant


def test_keys_are_required_and_roles_enforced(world) -> None:
    client, a, b, city, series_a, product, grant = world
    assert client.get("/v1/series").json() == []           # without a key: open products' series only (none)
    assert client.get(f"/v1/series/{series_a}/readings").status_code == 401
    assert client.get("/v1/series", headers={"Authorization": "Bearer cl_nope"}).status_code == 401
    r = client.get("/v1/orgs/me", headers={"X-API-Key": a.key})
    assert r.status_code == 200 and r.json()["slug"] == "alpha-air" and r.json()["kind"] == "provider"
    consumer = add_key(client.app.state.settings.database_url, a, "consumer")
    r = client.post("/v1/devices", headers=consumer.headers, json={"device": "x-1"})
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    # city organisations do not register devices
    assert client.post("/v1/devices", headers=city.headers, json={"device": "c-1"}).status_code == 403
    made = client.post("/v1/keys", headers=a.headers, json={"role": "consumer"}).json()
    assert client.get("/v1/orgs/me", headers={"Authorization": f"Bearer {made['api_key']}"}).status_code == 200
    assert "api_key" not in client.get("/v1/keys", headers=a.headers).json()[0]
    client.post(f"/v1/keys/{made['id']}/revoke", headers=a.headers)
    assert client.get("/v1/orgs/me", headers={"Authorization": f"Bearer {made['api_key']}"}).status_code == 401
    with psycopg.connect(client.app.state.settings.database_url) as conn:
        stored = conn.execute("SELECT key_hash FROM api_keys WHERE id = %s", (made["id"],)).fetchone()[0]
    assert made["api_key"].encode() not in bytes(stored)


def _fill(path: str, *, series: int, device: str, product: int, grant: int, key: int, integration: int) -> str:
    return (path.replace("{series_id}", str(series)).replace("{device}", device)
            .replace("{product_id}", str(product)).replace("{grant_id}", str(grant)).replace("{key_id}", str(key))
            .replace("{integration_id}", str(integration)))


def test_two_tenant_matrix(world) -> None:
    client, a, b, city, series_a, product, grant = world
    spec = client.get("/openapi.json").json()
    a_keys = client.get("/v1/keys", headers=a.headers).json()
    made = client.post("/v1/integrations", headers=a.headers,
                       json={"kind": "tts", "application_id": "alpha-air", "tenant_id": "alpha"})
    assert made.status_code == 201, made.text
    integration = made.json()["id"]
    secrets_of_a = {"alpha-1", "alpha-air/key", "alpha-air@alpha"}
    public = {"/v1/products", "/v1/products/{product_id}", "/v1/products/{product_id}/quality"}
    calls = 0
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        url = _fill(path, series=series_a, device="alpha-1", product=product["id"], grant=grant["id"],
                    key=a_keys[0]["id"], integration=integration)
        for method in operations:
            params = {"start": "2025-03-01T00:00:00Z", "end": "2025-03-02T00:00:00Z"}
            if path == "/v1/exports/readings":
                params["series_id"] = series_a
            body = {} if method == "post" else None
            if path == "/v1/products/{product_id}/requests":
                continue  # asking for access to a catalogue product is B's right; checked below
            r = client.request(method.upper(), url, headers=b.headers, params=params, json=body)
            calls += 1
            assert r.status_code < 500, (method, path, r.text)
            if path in public or url == path:
                # catalogue metadata is public by design; lists must not carry A's data
                if path not in public:
                    text = r.text
                    assert not any(s in text for s in secrets_of_a), (method, path, text[:300])
                    if r.headers["content-type"].startswith("application/json") and isinstance(r.json(), list):
                        assert all(item.get("id") != series_a or "device" not in item for item in r.json()), path
                continue
            assert r.status_code in (403, 404, 409, 422), (method, path, r.status_code, r.text)
            # the same call with a NUL byte in every query parameter and body string: refused at the edge
            poisoned = {name: f"{value}\x00" for name, value in params.items()}
            r = client.request(method.upper(), url, headers=b.headers, params={**poisoned, "x\x00": "1"},
                               json={"device": "beta-2\x00", "message": "\x00"} if method == "post" else None)
            assert r.status_code == 422 and r.json()["errors"][0]["in"] == "query", (method, path, r.text)
            if method == "post":
                r = client.request("POST", url, headers=b.headers, json={"device": "beta-2\x00", "message": "\x00"})
                assert r.status_code == 422 and r.json()["errors"][0]["in"] == "body", (path, r.text)
                assert {e["name"] for e in r.json()["errors"]} == {"device", "message"}, (path, r.text)
    assert calls >= 25
    # A's state is unchanged by B's attempts
    devices = client.get("/v1/devices", headers=a.headers).json()
    assert devices[0]["enabled"] is True
    assert client.get("/v1/integrations", headers=a.headers).json()[0]["enabled"] is True
    assert client.get("/v1/grants", headers=a.headers).json()[0]["status"] == "requested"
    assert client.get(f"/v1/series/{series_a}/readings", headers=a.headers,
                      params={"start": "2025-03-01T00:00:00Z"}).json()["count"] == 1000
    # B's audit view holds nothing of A
    assert all(e["org_id"] == b.org_id or e["owner_org"] == b.org_id
               for e in client.get("/v1/audit", headers=b.headers).json())


def test_grant_gives_exactly_its_series_until_revoked(world) -> None:
    client, a, b, city, series_a, product, grant = world
    params = {"start": "2025-03-01T00:00:00Z", "end": "2025-03-02T00:00:00Z"}
    assert client.get(f"/v1/series/{series_a}/readings", headers=city.headers, params=params).status_code == 404
    assert client.post(f"/v1/grants/{grant['id']}/approve", headers=b.headers, json={}).status_code == 404
    assert client.post(f"/v1/grants/{grant['id']}/approve", headers=a.headers, json={}).json()["status"] == "active"
    r = client.get(f"/v1/series/{series_a}/readings", headers=city.headers, params={**params, "limit": 300})
    assert r.status_code == 200 and r.json()["count"] == 300
    assert [s["id"] for s in client.get("/v1/series", headers=city.headers).json()] == [series_a]
    # B's series is not in the grant
    series_b = client.get("/v1/series", headers=b.headers).json()[0]["id"]
    assert client.get(f"/v1/series/{series_b}/readings", headers=city.headers).status_code == 404
    usage = client.get(f"/v1/grants/{grant['id']}", headers=city.headers).json()
    assert usage["requests"] == 1 and usage["rows_served"] == 300
    audit = client.get("/v1/audit", headers=a.headers, params={"action": "read.readings"}).json()
    assert audit[0]["series_id"] == series_a and audit[0]["rows"] == 300 and audit[0]["org_id"] == city.org_id
    assert client.post(f"/v1/grants/{grant['id']}/revoke", headers=a.headers).json()["status"] == "revoked"
    assert client.get(f"/v1/series/{series_a}/readings", headers=city.headers, params=params).status_code == 404


def test_cursor_pages_cover_every_reading_once(world) -> None:
    client, a, *_ , series_a, product, grant = world
    params = {"start": "2025-03-01T00:00:00Z", "end": "2025-03-02T00:00:00Z", "limit": 333}
    seen, cursor = [], None
    while True:
        body = client.get(f"/v1/series/{series_a}/readings", headers=a.headers,
                          params={**params, **({"cursor": cursor} if cursor else {})}).json()
        seen += [r["value"] for r in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [float(i) for i in range(1000)]
    bad = client.get(f"/v1/series/{series_a}/readings", headers=a.headers, params={**params, "cursor": "garbage"})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("cursor")


def test_exports_csv_and_parquet_state_units(world) -> None:
    client, a, *_ , series_a, product, grant = world
    params = {"start": "2025-03-01T00:00:00Z", "end": "2025-03-02T00:00:00Z", "series_id": series_a}
    csv_text = client.get("/v1/exports/readings", headers=a.headers, params={**params, "format": "csv"}).text
    lines = csv_text.splitlines()
    assert lines[0] == "series_id,device,quantity,unit,time,value" and len(lines) == 1001
    assert lines[1] == f"{series_a},alpha-1,pm2_5,ug/m3,2025-03-01T00:00:00.000000Z,0"
    raw = client.get("/v1/exports/readings", headers=a.headers, params={**params, "format": "parquet"}).content
    table = pq.read_table(io.BytesIO(raw))
    assert table.num_rows == 1000 and table.column("unit")[0].as_py() == "ug/m3"
    assert table.column("time")[1].as_py() == T0 + timedelta(seconds=10)
    agg = client.get(f"/v1/series/{series_a}/aggregates", headers=a.headers,
                     params={"start": params["start"], "end": params["end"], "format": "csv"})
    assert agg.status_code == 200 and agg.text.startswith("series_id,unit,bucket")
    latest = client.get("/v1/latest", headers=a.headers, params={"format": "parquet"})
    assert pq.read_table(io.BytesIO(latest.content)).column("value")[0].as_py() == 999.0


def test_quality_report_is_computed_from_the_data(world, testbed_settings: Settings) -> None:
    client, a, *_ , series_a, product, grant = world
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(testbed_settings.database_url, autocommit=True) as conn:
        # the last 6 hours: one reading every 20 s where 10 s are declared -> completeness ~ 0.5 of those hours
        conn.execute("UPDATE series SET created_at = %s WHERE id = %s", (now - timedelta(hours=6), series_a))
        conn.execute(
            "INSERT INTO aggregates (width_s, series_id, bucket, count, sum, min, max, last, last_time, m2)"
            " SELECT 60, %s, %s + g * interval '1 minute', 3, 3, 1, 1, 1, %s + g * interval '1 minute', 0"
            " FROM generate_series(0, 359) g",
            (series_a, now - timedelta(hours=6), now - timedelta(hours=6)),
        )
        conn.execute("INSERT INTO readings (time, series_id, value) VALUES (%s, %s, 1)",
                     (now - timedelta(minutes=1), series_a))
        conn.execute("INSERT INTO anomalies (time, series_id, value, score, kind) VALUES (%s, %s, 1, 9, 'spike')",
                     (now - timedelta(hours=1), series_a))
    body = client.get(f"/v1/products/{product['id']}/quality", headers=a.headers).json()
    week = next(w for w in body["windows"] if w["days"] == 7)
    assert week["readings"] == 1080 and week["anomalies"] == 1
    assert week["completeness"] == pytest.approx(0.5, abs=0.01)
    assert week["uptime"] == pytest.approx(1.0)
    assert week["anomaly_rate"] == pytest.approx(1 / 1080)
    assert 0 <= week["freshness_s"] < 3600
    assert re.match(r"\d{4}-", body["computed_at"])


def test_bad_input_is_a_problem_not_a_500(world) -> None:
    client, a, *_ = world
    for method, path, kwargs in [
        ("POST", "/v1/devices", {"json": {"device": "bad/slash"}}),
        ("POST", "/v1/devices", {"json": {"device": "ok-1", "sensors": [{"quantity": "t", "low": 5, "high": 1}]}}),
        ("POST", "/v1/devices", {"json": {"device": "ok-2", "gateway": "nobody"}}),
        ("POST", "/v1/devices", {"json": {"device": "alpha-1"}}),
        ("POST", "/v1/devices", {"content": b"{not json", "headers": {"Content-Type": "application/json"}}),
        ("POST", "/v1/products", {"json": {"title": "x", "licence": "CC-BY-4.0", "series_ids": [999999]}}),
        ("GET", "/v1/series", {"params": {"bbox": "1,2,3"}}),
        ("GET", "/v1/exports/readings", {"params": {"format": "json"}}),
        ("POST", "/v1/grants/1/approve", {"json": {"expires_at": "2020-01-01T00:00:00Z"}}),
    ]:
        headers = {**a.headers, **kwargs.pop("headers", {})}
        r = client.request(method, path, headers=headers, **kwargs)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json", path
        assert r.json()["detail"], path
