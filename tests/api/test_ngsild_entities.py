"""NGSI-LD consumption: entities derived from our devices, validated against
their Smart Data Models' JSON Schemas (local copies), representations,
contexts, q, geo-queries, paging, tenancy and problem details."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from ngsild_lab import CTX_REL, DOMAIN, ERR, NgsiLab, context_url, link, seed, validator
from testbed import Tenant, make_tenant

from api import create_app
from citylab.settings import Settings

BASE = "/ngsi-ld/v1"


@pytest.fixture
def ngsi_lab(database: str) -> NgsiLab:
    return seed(database)


@pytest.fixture
def tenant(ngsi_lab: NgsiLab) -> Tenant:
    return make_tenant(ngsi_lab.url, name="Lab", kind="provider", slug="lab")


@pytest.fixture
def client(ngsi_lab: NgsiLab, tenant: Tenant) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=ngsi_lab.url)), headers=tenant.headers) as client:
        yield client


@pytest.mark.parametrize("model", sorted(DOMAIN))
def test_every_entity_validates_against_its_smart_data_model(client: TestClient, model: str) -> None:
    r = client.get(f"{BASE}/entities", params={"type": model, "format": "keyValues"}, headers=link(DOMAIN[model]))
    assert r.status_code == 200, r.text
    entities = r.json()
    assert entities, f"no {model} entity"
    check = validator(model)
    for entity in entities:
        errors = [e.message for e in check.iter_errors(entity)]
        assert not errors, (entity, errors)
        assert entity["type"] == model
        assert entity["id"] == f"urn:ngsi-ld:{model}:lab:{entity['name']}"


def test_normalized_entity_has_properties_with_observed_at_and_unit_codes(client: TestClient) -> None:
    r = client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:lab:air-1", headers=link("Environment"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert context_url("Environment") in r.headers["link"]
    e = r.json()
    assert e["type"] == "AirQualityObserved"
    assert e["location"] == {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.7331, 58.969]}}
    assert e["pm25"] == {"type": "Property", "value": 14.0, "observedAt": "2025-03-01T12:02:00.000000Z",
                         "unitCode": "GQ"}
    # the vocabulary's conversions: K -> Cel, %RH -> fraction (ratio, C62)
    assert e["temperature"]["value"] == pytest.approx(9.0) and e["temperature"]["unitCode"] == "CEL"
    assert e["relativeHumidity"]["value"] == pytest.approx(0.6) and e["relativeHumidity"]["unitCode"] == "C62"
    assert e["dateObserved"] == {"type": "Property", "value": "2025-03-01T12:02:00.000000Z"}


def test_concise_and_key_values(client: TestClient) -> None:
    url = f"{BASE}/entities/urn:ngsi-ld:NoiseLevelObserved:lab:noise-1"
    concise = client.get(url, params={"format": "concise"}, headers=link("Environment")).json()
    assert concise["LAeq"] == {"value": 58.0, "observedAt": "2025-03-01T12:02:00.000000Z", "unitCode": "2N"}
    assert concise["name"] == "noise-1"
    assert concise["location"] == {"type": "Point", "coordinates": [5.73, 58.97]}
    kv = client.get(url, params={"options": "keyValues"}, headers=link("Environment")).json()
    assert kv["LAeq"] == 58.0 and kv["dateObservedFrom"] == "2025-03-01T12:01:00.000000Z"


def test_without_a_link_header_terms_are_expanded_against_the_core_context(client: TestClient) -> None:
    r = client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:lab:air-1")
    e = r.json()
    assert e["type"] == "https://smartdatamodels.org/dataModel.Environment/AirQualityObserved"
    assert "https://smartdatamodels.org/dataModel.Environment/pm25" in e
    assert "location" in e  # a core term
    assert "ngsi-ld-core-context-v1.8.jsonld" in r.headers["link"]


def test_ld_json_answer_carries_the_context_and_expands_with_pyld(client: TestClient) -> None:
    from pyld import jsonld

    from api.ngsild.context import ContextResolver
    from citylab.outbound import OutboundPolicy

    r = client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:lab:air-1",
                   headers={**link("Environment"), "Accept": "application/ld+json"})
    assert r.headers["content-type"].startswith("application/ld+json")
    body = r.json()
    assert body["@context"][0] == context_url("Environment")
    loader = ContextResolver(OutboundPolicy()).loader
    expanded = jsonld.expand(body, {"documentLoader": loader})
    pm25 = expanded[0]["https://smartdatamodels.org/dataModel.Environment/pm25"][0]
    assert pm25["https://uri.etsi.org/ngsi-ld/hasValue"][0]["@value"] == 14.0


def test_q_filters_on_values_and_observed_at(client: TestClient) -> None:
    def ids(**params) -> list[str]:
        r = client.get(f"{BASE}/entities", params={"type": "AirQualityObserved", **params}, headers=link("Environment"))
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()]

    air1, air2 = "urn:ngsi-ld:AirQualityObserved:lab:air-1", "urn:ngsi-ld:AirQualityObserved:lab:air-2"
    assert ids(q="pm25>20") == [air2]
    assert ids(q="pm25<20;no2==21") == [air1]
    assert ids(q="pm25==10..15|pm25==40") == [air1, air2]
    assert ids(q="no2") == [air1]
    assert ids(q="pm25!=14") == [air2]
    assert ids(q="pm25==14,40") == [air1, air2]
    assert ids(q="pm25.observedAt>=2025-03-01T12:02:00Z") == [air1, air2]
    assert ids(q="dateObserved<2025-03-01T12:00:00Z") == []
    assert ids(q="(pm25>30|no2>20);pm25<100") == [air1, air2]
    assert ids(q="noSuchAttribute>1") == []


def test_bad_q_is_bad_request_data(client: TestClient) -> None:
    r = client.get(f"{BASE}/entities", params={"type": "AirQualityObserved", "q": "pm25>>1"})
    assert r.status_code == 400
    assert r.json()["type"] == ERR + "BadRequestData"
    assert "pm25>>1" in r.json()["detail"]


def test_geo_queries(client: TestClient) -> None:
    def ids(**params) -> list[str]:
        r = client.get(f"{BASE}/entities", params={"type": "AirQualityObserved", **params}, headers=link("Environment"))
        assert r.status_code == 200, r.text
        return [e["id"].rsplit(":", 1)[1] for e in r.json()]

    near = {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": "[5.7331,58.969]"}
    assert ids(**near) == ["air-1"]
    assert ids(**{**near, "georel": "near;minDistance==2000"}) == ["air-2"]
    box = [[[5.70, 58.95], [5.76, 58.95], [5.76, 58.99], [5.70, 58.99], [5.70, 58.95]]]
    assert ids(georel="within", geometry="Polygon", coordinates=json.dumps(box)) == ["air-1"]
    assert ids(georel="disjoint", geometry="Polygon", coordinates=json.dumps(box)) == ["air-2"]
    r = client.get(f"{BASE}/entities", params={"type": "AirQualityObserved", "georel": "near", "geometry": "Point",
                                                "coordinates": "[5.7,58.9]"})
    assert r.status_code == 400 and r.json()["type"] == ERR + "BadRequestData"


def test_paging_with_count_header_and_links(client: TestClient) -> None:
    params = {"idPattern": "^urn:ngsi-ld:.*:lab:.*", "count": "true", "limit": 2}
    first = client.get(f"{BASE}/entities", params=params)
    assert first.status_code == 200
    assert first.headers["NGSILD-Results-Count"] == "6"
    assert len(first.json()) == 2 and 'rel="next"' in first.headers["link"]
    seen = [e["id"] for e in first.json()]
    for offset in (2, 4):
        page = client.get(f"{BASE}/entities", params={**params, "offset": offset})
        seen += [e["id"] for e in page.json()]
    assert len(set(seen)) == 6
    only_count = client.get(f"{BASE}/entities", params={**params, "limit": 0})
    assert only_count.json() == [] and only_count.headers["NGSILD-Results-Count"] == "6"
    too_many = client.get(f"{BASE}/entities", params={**params, "limit": 5000})
    assert too_many.status_code == 403 and too_many.json()["type"] == ERR + "TooManyResults"


def test_attrs_pick_and_id_list(client: TestClient) -> None:
    r = client.get(f"{BASE}/entities", headers=link("Environment"), params={
        "id": "urn:ngsi-ld:AirQualityObserved:lab:air-1,urn:ngsi-ld:AirQualityObserved:lab:air-2", "pick": "pm25",
        "format": "keyValues"})
    assert r.json() == [
        {"id": "urn:ngsi-ld:AirQualityObserved:lab:air-1", "type": "AirQualityObserved", "pm25": 14.0},
        {"id": "urn:ngsi-ld:AirQualityObserved:lab:air-2", "type": "AirQualityObserved", "pm25": 40.0},
    ]
    only_no2 = client.get(f"{BASE}/entities", params={"attrs": "no2", "type": "AirQualityObserved"},
                          headers=link("Environment")).json()
    assert [e["id"] for e in only_no2] == ["urn:ngsi-ld:AirQualityObserved:lab:air-1"]
    assert set(only_no2[0]) == {"id", "type", "no2"}


def test_types_and_attributes(client: TestClient) -> None:
    types = client.get(f"{BASE}/types", headers=link("Environment")).json()
    assert types["type"] == "EntityTypeList"
    assert {"AirQualityObserved", "NoiseLevelObserved"} <= set(types["typeList"])
    info = client.get(f"{BASE}/types/AirQualityObserved", headers=link("Environment")).json()
    assert info["entityCount"] == 2
    assert {a["attributeName"] for a in info["attributeDetails"]} == {"pm25", "no2", "relativeHumidity", "temperature"}
    attrs = client.get(f"{BASE}/attributes", headers=link("Environment")).json()
    assert {"pm25", "LAeq", "location"} <= set(attrs["attributeList"])
    pm25 = client.get(f"{BASE}/attributes/pm25", headers=link("Environment")).json()
    assert pm25["attributeCount"] == 2 and pm25["typeNames"] == ["AirQualityObserved"]


def test_tenancy_and_problem_details(client: TestClient, ngsi_lab: NgsiLab) -> None:
    other = "urn:ngsi-ld:AirQualityObserved:other:air-9"
    r = client.get(f"{BASE}/entities/{other}")
    assert r.status_code == 404 and r.json()["type"] == ERR + "ResourceNotFound"
    r = client.get(f"{BASE}/entities", params={"type": "AirQualityObserved"}, headers={
        **link("Environment"), "NGSILD-Tenant": "other"})
    assert r.status_code == 404 and r.json()["type"] == ERR + "NonexistentTenant"
    r = client.get(f"{BASE}/entities", params={"type": "AirQualityObserved"}, headers={
        **link("Environment"), "NGSILD-Tenant": "lab"})
    assert r.status_code == 200 and len(r.json()) == 2
    # the other organisation sees its own entity, and none of lab's
    theirs = make_tenant(ngsi_lab.url, name="Other", kind="provider", slug="other")
    r = client.get(f"{BASE}/entities", params={"type": "AirQualityObserved", "format": "keyValues"},
                   headers={**link("Environment"), **theirs.headers})
    assert [e["id"] for e in r.json()] == [other]
    r = client.get(f"{BASE}/entities", params={"type": "AirQualityObserved"}, headers={"Authorization": "Bearer x"})
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/json")
    assert client.get(f"{BASE}/entities/not a uri").json()["type"] == ERR + "BadRequestData"
    assert client.get(f"{BASE}/entities").json()["type"] == ERR + "BadRequestData"
    assert client.get(f"{BASE}/entities/{other}", headers={"Accept": "text/csv"}).status_code == 406


def test_context_urls_are_guarded_against_request_forgery(client: TestClient) -> None:
    r = client.get(f"{BASE}/entities", params={"type": "AirQualityObserved"},
                   headers={"Link": f"<http://127.0.0.1:9/context.jsonld>; {CTX_REL}"})
    assert r.status_code == 503
    assert r.json()["type"] == ERR + "LdContextNotAvailable"
    assert "refused" in r.json()["detail"]
