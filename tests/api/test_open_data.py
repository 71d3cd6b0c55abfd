"""Open products need no key: catalogue, quality, latest values, readings, aggregates and
exports of an open product are readable without one, rate-limited per client address in
the database and audited as anonymous; nothing closed is reachable without a key."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pyarrow.parquet as pq
import pytest
from catalog_lab import T0, Market, seed_market
from fastapi.testclient import TestClient

from api import create_app
from citylab.settings import Settings

RANGE = {"start": (T0 - timedelta(days=1)).isoformat(), "end": (T0 + timedelta(days=1)).isoformat()}


@pytest.fixture
def market(database: str) -> Market:
    return seed_market(database)


@pytest.fixture
def anonymous(market: Market) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=market.url, open_rate_limit=10_000))) as client:
        yield client


def _audit(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT actor, action, org_id, key_id, owner_org, series_id, rows FROM audit_log"
                            " WHERE actor LIKE 'anonymous/%' ORDER BY id").fetchall()


def test_an_open_product_is_readable_without_a_key(anonymous: TestClient, market: Market) -> None:
    products = anonymous.get("/v1/products").json()
    assert [p["id"] for p in products] == [market.open_product]
    assert products[0]["open"] is True and products[0]["licence"] == "NLOD-2.0"
    assert anonymous.get(f"/v1/products/{market.open_product}").json()["title_nb"].startswith("Luftkvalitet")
    quality = anonymous.get(f"/v1/products/{market.open_product}/quality").json()
    assert quality["windows"][0]["completeness"] > 0.99
    series = anonymous.get("/v1/series").json()
    assert sorted(s["id"] for s in series) == sorted(market.open_series)
    latest = anonymous.get("/v1/latest").json()
    assert sorted(v["series_id"] for v in latest) == sorted(market.open_series)
    sid = market.open_series[0]
    readings = anonymous.get(f"/v1/series/{sid}/readings", params=RANGE).json()
    assert readings["count"] == 360 and readings["series"]["unit"] == "ug/m3"
    aggregates = anonymous.get(f"/v1/series/{sid}/aggregates", params={**RANGE, "bucket": "PT1H"}).json()
    assert sum(b["count"] for b in aggregates["data"]) == 360
    csv = anonymous.get("/v1/exports/readings", params={**RANGE, "series_id": sid, "format": "csv"})
    assert csv.status_code == 200 and csv.text.count("\n") == 361 and ",pm2_5,ug/m3," in csv.text
    parquet = anonymous.get("/v1/exports/readings", params={**RANGE, "format": "parquet"})
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.num_rows == 4 * 360 and set(table.column("series_id").to_pylist()) == set(market.open_series)
    # audited as anonymous, with the client address, about the provider's data
    rows = _audit(market.url)
    actions = {r[1] for r in rows}
    assert {"read.latest", "read.readings", "read.aggregates", "export.readings"} <= actions
    assert all(r[0] == "anonymous/testclient" and r[2] is None and r[3] is None for r in rows)
    assert {r[4] for r in rows} == {market.air.org_id}
    assert ("anonymous/testclient", "read.readings", None, None, market.air.org_id, sid, 360) in rows
    # and the provider sees who read its open data
    provider_view = anonymous.get("/v1/audit", headers={"Authorization": f"Bearer {market.air.key}"},
                                  params={"action": "read.readings"}).json()
    assert any(e["actor"] == "anonymous/testclient" and e["rows"] == 360 for e in provider_view)


def test_keyless_requests_are_limited_per_address_in_the_database(market: Market) -> None:
    settings = Settings(database_url=market.url, open_rate_limit=3, open_rate_window_s=3600)
    # two app instances (two API processes) share the count: it lives in the database
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        assert first.get("/v1/products").status_code == 200
        assert second.get("/catalog.ttl").status_code == 200
        assert first.get("/v1/latest").status_code == 200
        refused = second.get("/v1/latest")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["content-type"] == "application/problem+json"
        assert "testclient" in refused.json()["detail"]
        # a key is not rate-limited as anonymous
        keyed = first.get("/v1/latest", headers={"Authorization": f"Bearer {market.city.key}"})
        assert keyed.status_code == 200
    with psycopg.connect(market.url) as conn:
        assert conn.execute("SELECT client, requests FROM anonymous_requests").fetchall() == [("testclient", 4)]


def _fill(path: str, market: Market, series: int) -> str:
    return (path.replace("{series_id}", str(series)).replace("{device}", "meter-1")
            .replace("{product_id}", str(market.priced_product)).replace("{grant_id}", "1")
            .replace("{key_id}", "1").replace("{entity}", "datasets/1").replace("{extension}", "ttl"))


def test_nothing_closed_is_reachable_without_a_key(anonymous: TestClient, market: Market) -> None:
    """Every operation of the OpenAPI document, without a key, on closed resources."""
    with psycopg.connect(market.url, autocommit=True) as conn:    # a grant, so /v1/grants/1 exists
        conn.execute("INSERT INTO access_grants (product_id, consumer_org, status) VALUES (%s, %s, 'active')",
                     (market.priced_product, market.research.org_id))
    closed_devices = ("meter-1", "noise-1")
    public = {"/health", "/v1/products", "/v1/series", "/v1/latest", "/v1/exports/readings",
              "/catalog", "/catalog.{extension}", "/sta/v1.1", "/metrics", "/v1/classification", "/catalog/{entity}", "/open/api/overview", "/open/api/chart"}
    spec = anonymous.get("/openapi.json").json()
    calls = 0
    for path, operations in spec["paths"].items():
        for method in operations:
            for series in market.closed_series[:1] + [999_999]:
                url = _fill(path, market, series)
                params = dict(RANGE)
                if path == "/v1/exports/readings":
                    params["series_id"] = series
                if path == "/open/api/chart":
                    params["quantity"] = "energy"        # only closed products measure energy
                r = anonymous.request(method.upper(), url, params=params, json={} if method != "get" else None)
                calls += 1
                text = r.text
                assert not any(d in text for d in closed_devices), (method, path, text[:300])
                assert not re.search(r"cl_[0-9a-f]{12}_", text), (method, path)
                assert "mqtt_password" not in text and "key_hash" not in text
                if path in public and method == "get":
                    assert r.status_code in (200, 401, 404), (method, path, r.status_code, text[:300])
                    continue
                assert r.status_code in (401, 405), (method, path, r.status_code, text[:300])
                if r.status_code == 401:
                    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert calls >= 40
    # closed products' data: 401 whether the series exists or not (existence does not leak)
    for sid in market.closed_series:
        assert anonymous.get(f"/v1/series/{sid}/readings", params=RANGE).status_code == 401
        assert anonymous.get(f"/v1/series/{sid}/aggregates", params=RANGE).status_code == 401
        assert anonymous.get("/v1/exports/readings", params={**RANGE, "series_id": sid}).status_code == 401
    assert anonymous.get("/v1/latest", params={"series_id": market.closed_series}).json() == []
    for product in (market.priced_product, market.noise_product, market.hidden_product, 999_999):
        assert anonymous.get(f"/v1/products/{product}").status_code == 401
        assert anonymous.get(f"/v1/products/{product}/quality").status_code == 401
    # an invalid key is refused, not treated as anonymous
    bad = anonymous.get("/v1/latest", headers={"Authorization": "Bearer cl_000000000000_nope-nope-nope-nope-nope"})
    assert bad.status_code == 401


def test_a_provider_opens_and_closes_a_product(anonymous: TestClient, market: Market) -> None:
    energy = {"Authorization": f"Bearer {market.energy.key}"}
    air = {"Authorization": f"Bearer {market.air.key}"}
    r = anonymous.patch(f"/v1/products/{market.priced_product}", headers=energy, json={"open": True})
    assert r.status_code == 422 and "open licence" in r.json()["detail"]
    r = anonymous.patch(f"/v1/products/{market.noise_product}", headers=air, json={"open": True})
    assert r.status_code == 422 and "price" in r.json()["detail"]
    r = anonymous.patch(f"/v1/products/{market.hidden_product}", headers=air, json={"open": True})
    assert r.status_code == 404                           # not the air SME's product
    r = anonymous.patch(f"/v1/products/{market.hidden_product}", headers=energy, json={"open": True, "listed": True})
    assert r.status_code == 200 and r.json()["open"] and r.json()["listed"]
    hidden_series = r.json()["series_ids"][0]
    assert anonymous.get(f"/v1/series/{hidden_series}/readings", params=RANGE).json()["count"] == 24
    assert f"/catalog/datasets/{market.hidden_product}>" in anonymous.get("/catalog.ttl").text
    r = anonymous.patch(f"/v1/products/{market.hidden_product}", headers=energy, json={"open": False})
    assert r.status_code == 200 and not r.json()["open"] and r.json()["listed"]
    assert anonymous.get(f"/v1/series/{hidden_series}/readings", params=RANGE).status_code == 401
    with psycopg.connect(market.url) as conn:
        changes = conn.execute("SELECT detail FROM audit_log WHERE action = 'product.publication' ORDER BY id").fetchall()
    assert [c[0]["open"] for c in changes] == [True, False]
