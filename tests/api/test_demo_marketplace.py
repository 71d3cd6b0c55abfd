"""The demo's marketplace (citylab.demo): two provider SMEs, the city and a research
organisation with a key each; once the district's series exist, an open and a priced
product, listed, and a research grant on the priced one."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient

from api import create_app
from citylab.demo import publish_marketplace, seed_marketplace
from citylab.settings import Settings
from storage.registry import register_device


def test_the_marketplace_around_the_district(database: str) -> None:
    with psycopg.connect(database) as conn:
        keys = seed_marketplace(conn, district_org="lab")
        conn.commit()
        assert publish_marketplace(conn, district_org="lab") is False      # no series yet
        register_device(conn, org="lab", device="air-1", gateway=None, kind="serial")
        for quantity, unit in (("pm2_5", "ug/m3"), ("no2", "ug/m3"), ("noise", "dB")):
            conn.execute("INSERT INTO series (org, device, quantity, unit) VALUES ('lab', 'air-1', %s, %s)",
                         (quantity, unit))
        assert publish_marketplace(conn, district_org="lab") is True
        assert publish_marketplace(conn, district_org="lab") is True       # once only
        conn.commit()
    assert set(keys) == {"lab (admin)", "fjord-energi (provider)", "stavanger (consumer)", "uis (consumer)"}
    with TestClient(create_app(Settings(database_url=database))) as client:
        products = {p["title"]: p for p in client.get("/v1/products", headers={"X-API-Key": keys["lab (admin)"]}).json()}
        assert len(products) == 2
        open_product = products["Air quality, central district"]
        priced = products["District sensors, full feed"]
        assert open_product["open"] and open_product["listed"] and open_product["price_month"] is None
        assert not priced["open"] and priced["listed"] and priced["price_month"] == "1500.00"
        # without a key: the open product only; the research key holds an active grant on the priced one
        assert [p["id"] for p in client.get("/v1/products").json()] == [open_product["id"]]
        grants = client.get("/v1/grants", headers={"X-API-Key": keys["uis (consumer)"]}).json()
        assert [(g["product_id"], g["status"]) for g in grants] == [(priced["id"], "active")]
        research_series = {s["id"] for s in client.get("/v1/series", headers={"X-API-Key": keys["uis (consumer)"]}).json()}
        assert set(priced["series_ids"]) | set(open_product["series_ids"]) == research_series
        for key in keys.values():
            assert client.get("/v1/orgs/me", headers={"X-API-Key": key}).status_code == 200
        catalogue = client.get("/catalog.ttl").text
        assert "Stavanger kommune" in catalogue and "964965226" in catalogue
