"""The demo's marketplace (citylab.demo): two provider SMEs, the city and a research
organisation with a key per role; once an SME's series exist, an open and a priced
product of it, listed, and a research grant on each priced one."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient
from rdflib import Graph
from test_catalog import _violations

from api import create_app
from citylab.demo import ENERGY_ORG, publish_marketplace, seed_marketplace
from citylab.settings import Settings
from storage.registry import register_device


def _series(conn: psycopg.Connection, org: str, device: str, quantities: tuple[tuple[str, str], ...]) -> None:
    register_device(conn, org=org, device=device, gateway=None, kind="serial")
    for quantity, unit in quantities:
        conn.execute("INSERT INTO series (org, device, quantity, unit) VALUES (%s, %s, %s, %s)",
                     (org, device, quantity, unit))


def test_the_marketplace_around_the_district(database: str) -> None:
    with psycopg.connect(database) as conn:
        keys = seed_marketplace(conn, district_org="lab")
        conn.commit()
        assert publish_marketplace(conn, district_org="lab") is False      # no series yet
        _series(conn, "lab", "air-1", (("pm2_5", "ug/m3"), ("no2", "ug/m3"), ("noise", "dB")))
        register_device(conn, org=ENERGY_ORG, device="meter-001", gateway=None, kind="serial")
        assert publish_marketplace(conn, district_org="lab") is False      # the energy SME's meter has none
        conn.execute("INSERT INTO series (org, device, quantity, unit) VALUES (%s, 'meter-001', 'energy', 'kWh'),"
                     " (%s, 'meter-001', 'power', 'W')", (ENERGY_ORG, ENERGY_ORG))
        assert publish_marketplace(conn, district_org="lab") is True
        assert publish_marketplace(conn, district_org="lab") is True       # once only
        conn.commit()
    assert set(keys) == {"lab (admin)", "fjord-energi (provider)", "stavanger (consumer)", "stavanger (operator)",
                         "uis (consumer)"}
    with TestClient(create_app(Settings(database_url=database))) as client:
        def get(path: str, key: str | None = None):
            response = client.get(path, headers={"X-API-Key": keys[key]} if key else {})
            assert response.status_code == 200, response.text
            return response.json()

        products = {p["title"]: p for p in get("/v1/products", "lab (admin)")}
        assert len(products) == 4
        by_provider = {(p["provider"], p["open"]): p for p in products.values()}
        assert set(by_provider) == {("lab", True), ("lab", False), (ENERGY_ORG, True), (ENERGY_ORG, False)}
        for provider in ("lab", ENERGY_ORG):
            free, priced = by_provider[(provider, True)], by_provider[(provider, False)]
            assert free["listed"] and free["price_month"] is None and free["licence"] in ("CC-BY-4.0", "NLOD-2.0")
            assert priced["listed"] and priced["price_month"] is not None and priced["licence"] == "proprietary"
        assert products["District sensors, full feed"]["price_month"] == "1500.00"
        # without a key: the open products only; the research key holds an active grant on each priced one
        assert sorted(p["id"] for p in get("/v1/products")) == sorted(by_provider[(o, True)]["id"]
                                                                       for o in ("lab", ENERGY_ORG))
        grants = get("/v1/grants", "uis (consumer)")
        assert sorted((g["product_id"], g["status"]) for g in grants) == sorted(
            (by_provider[(o, False)]["id"], "active") for o in ("lab", ENERGY_ORG))
        research_series = {s["id"] for s in get("/v1/series", "uis (consumer)")}
        assert {sid for p in products.values() for sid in p["series_ids"]} == research_series
        # the energy SME sees its own meter and the open series, not the district's priced ones
        seen = {(s["device"], s["quantity"]) for s in get("/v1/series", "fjord-energi (provider)")}
        assert seen == {("meter-001", "energy"), ("meter-001", "power"), ("air-1", "pm2_5"), ("air-1", "no2")}
        # the operator key sees the whole lab
        assert get("/v1/status?scope=lab", "stavanger (operator)")["series"] == 5
        for key in keys:
            assert get("/v1/orgs/me", key)["slug"] == key.split()[0]
        catalogue = client.get("/catalog.ttl").text
        assert "Stavanger kommune" in catalogue and "964965226" in catalogue and "Fjord Energi AS" in catalogue
        # what a portal harvests from the demo validates too
        data = Graph().parse(data=catalogue, format="turtle")
        assert "\n".join(_violations(data, "shapes.ttl", "range.ttl")) == ""
        assert "\n".join(_violations(data, "dcat-ap-no-2.00-shapes.ttl")) == ""
