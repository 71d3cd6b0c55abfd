"""NGSI-LD provision: context entities of any type stored per organisation,
observations of our devices through the ingest pipeline (validation,
de-duplication, dead letters, counters), onboarding, temporal backfill."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from fastapi.testclient import TestClient
from ngsild_lab import ERR, T0, NgsiLab, client, link, ngsi_lab, tenant, validator  # noqa: F401 (fixtures)
from testbed import Tenant, add_key


BASE = "/ngsi-ld/v1"
LD = {"Content-Type": "application/ld+json"}
BUILDING_CONTEXT = {"Building": "https://example.org/city#Building", "floors": "https://example.org/city#floors",
                    "category": "https://example.org/city#category", "owner": "https://example.org/city#owner",
                    "refDevice": "https://example.org/city#refDevice",
                    "occupancy": "https://example.org/city#occupancy"}


def iso(t) -> str:
    return t.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def city_context() -> Iterator[str]:
    """A real HTTP server on loopback serving the producer's @context; its URL."""
    body = json.dumps({"@context": BUILDING_CONTEXT}).encode()
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            requests.append(self.path)
            self.send_response(200 if self.path == "/city.jsonld" else 404)
            self.send_header("Content-Type", "application/ld+json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/city.jsonld"
    server.shutdown()
    server.server_close()
    thread.join()


def city(url: str) -> dict[str, str]:
    return {"Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}


def counters(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT name, value FROM ingest_counters").fetchall())


def readings(url: str, device: str, quantity: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT r.time, r.value, s.unit FROM readings r JOIN series s ON s.id = r.series_id"
            " WHERE s.org = 'lab' AND s.device = %s AND s.quantity = %s ORDER BY r.time", (device, quantity)).fetchall()


def building(**extra) -> dict:
    return {"id": "urn:ngsi-ld:Building:town-hall", "type": "Building", "@context": [BUILDING_CONTEXT],
            "floors": {"type": "Property", "value": 5}, "category": "civic",
            "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Organisation:stavanger"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.7331, 58.9700]}},
            **extra}


def test_context_entity_round_trip(client: TestClient) -> None:
    r = client.post(f"{BASE}/entities", json=building(), headers=LD)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"{BASE}/entities/urn:ngsi-ld:Building:town-hall"
    again = client.post(f"{BASE}/entities", json=building(), headers=LD)
    assert again.status_code == 409 and again.json()["type"] == ERR + "AlreadyExists"
    body = client.get(f"{BASE}/entities/urn:ngsi-ld:Building:town-hall").json()
    # without the producer's context the names are its IRIs
    assert body["type"] == "https://example.org/city#Building"
    assert body["https://example.org/city#floors"] == {"type": "Property", "value": 5}
    assert body["https://example.org/city#category"] == {"type": "Property", "value": "civic"}
    assert body["location"]["value"]["coordinates"] == [5.7331, 58.97]
    # with it (ld+json answer, context in the body) the producer's terms come back
    expanded = client.get(f"{BASE}/entities", params={"type": "https://example.org/city#Building",
                                                      "format": "keyValues"}).json()
    assert expanded[0]["https://example.org/city#owner"] == "urn:ngsi-ld:Organisation:stavanger"


def test_context_entities_are_queried_with_q_geo_and_paged_after_device_entities(client: TestClient,
                                                                                  city_context: str) -> None:
    assert client.post(f"{BASE}/entities", json=building(), headers=LD).status_code == 201
    other = building(id="urn:ngsi-ld:Building:library", floors={"type": "Property", "value": 2}, category="culture")
    other["location"] = {"type": "Point", "coordinates": [5.7000, 58.9100]}
    assert client.post(f"{BASE}/entities", json=other, headers=LD).status_code == 201
    def ids(**params) -> list[str]:
        r = client.get(f"{BASE}/entities", params=params, headers=city(city_context))
        assert r.status_code == 200, r.text
        return [e["id"].rsplit(":", 1)[1] for e in r.json()]

    assert ids(type="Building", q="floors>3") == ["town-hall"]
    assert ids(type="Building", q='category=="culture"') == ["library"]
    assert ids(type="Building", q='category~="^civ"') == ["town-hall"]
    assert ids(type="Building", q="floors==2..5;category!=\"civic\"") == ["library"]
    assert ids(type="Building", q="owner==urn:ngsi-ld:Organisation:stavanger") == ["library", "town-hall"]
    assert ids(type="Building", georel="near;maxDistance==1000", geometry="Point",
               coordinates="[5.7331,58.97]") == ["town-hall"]
    compact = client.get(f"{BASE}/entities/urn:ngsi-ld:Building:library", headers=city(city_context),
                         params={"format": "concise"}).json()
    assert compact == {"id": "urn:ngsi-ld:Building:library", "type": "Building", "floors": 2, "category": "culture",
                       "owner": {"object": "urn:ngsi-ld:Organisation:stavanger"},
                       "location": {"type": "Point", "coordinates": [5.7, 58.91]}}
    # device entities first, then context entities, one count over both
    r = client.get(f"{BASE}/entities", params={"idPattern": ".*", "count": "true", "limit": 5, "offset": 4})
    assert r.headers["NGSILD-Results-Count"] == "8"
    assert [e["id"] for e in r.json()][-2:] == ["urn:ngsi-ld:Building:library", "urn:ngsi-ld:Building:town-hall"]


def test_update_append_and_delete_context_entity(client: TestClient) -> None:
    assert client.post(f"{BASE}/entities", json=building(), headers=LD).status_code == 201
    url = f"{BASE}/entities/urn:ngsi-ld:Building:town-hall"
    r = client.patch(f"{url}/attrs", json={"@context": [BUILDING_CONTEXT], "floors": 6, "roof": "green"}, headers=LD)
    assert r.status_code == 207
    assert r.json()["notUpdated"][0]["attributeName"].endswith("roof")
    r = client.post(f"{url}/attrs", json={"@context": [BUILDING_CONTEXT], "category": "x", "height": 30},
                    headers=LD, params={"options": "noOverwrite"})
    assert r.status_code == 207
    body = client.get(url, params={"format": "keyValues"}).json()
    assert body["https://example.org/city#floors"] == 6
    assert body["https://example.org/city#category"] == "civic"
    assert body["height"] == 30   # not in the producer's context: the core @vocab, compacted back
    assert client.delete(url).status_code == 204
    assert client.get(url).json()["type"] == ERR + "ResourceNotFound"
    assert client.delete(url).json()["type"] == ERR + "ResourceNotFound"


def test_observations_go_through_the_ingest_pipeline(client: TestClient, ngsi_lab: NgsiLab) -> None:
    before = counters(ngsi_lab.url)
    at = T0 + timedelta(minutes=10)
    entity = {"id": "urn:ngsi-ld:AirQualityObserved:lab:air-1", "type": "AirQualityObserved",
              "pm25": {"type": "Property", "value": 33.0, "observedAt": iso(at), "unitCode": "GQ"},
              "relativeHumidity": {"type": "Property", "value": 0.42, "observedAt": iso(at)},
              "temperature": {"type": "Property", "value": 12.0, "observedAt": iso(at), "unitCode": "CEL"}}
    r = client.post(f"{BASE}/entityOperations/upsert", json=[entity], headers=link("Environment"))
    assert r.status_code == 204, r.text
    assert readings(ngsi_lab.url, "air-1", "pm2_5")[-1][1:] == (33.0, "ug/m3")
    assert readings(ngsi_lab.url, "air-1", "humidity")[-1][1] == pytest.approx(42.0)
    # the series is registered in K: the pipeline gets the value in its unit
    assert readings(ngsi_lab.url, "air-1", "temperature")[-1][1:] == (pytest.approx(285.15), "K")
    after = counters(ngsi_lab.url)
    assert after["packs_stored"] == before["packs_stored"] + 1
    assert after["readings_stored"] == before["readings_stored"] + 3
    # the same request again is a duplicate pack: nothing stored twice
    assert client.post(f"{BASE}/entityOperations/upsert", json=[entity], headers=link("Environment")).status_code == 204
    assert len(readings(ngsi_lab.url, "air-1", "pm2_5")) == 4
    assert counters(ngsi_lab.url)["packs_duplicate"] == after["packs_duplicate"] + 1
    # the entity now shows the new latest value
    served = client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:lab:air-1", headers=link("Environment"))
    assert served.json()["pm25"]["value"] == 33.0


def test_patch_attrs_of_a_device_entity_and_its_refusals(client: TestClient, ngsi_lab: NgsiLab) -> None:
    url = f"{BASE}/entities/urn:ngsi-ld:NoiseLevelObserved:lab:noise-1/attrs"
    at = iso(T0 + timedelta(minutes=20))
    r = client.patch(url, json={"LAeq": {"value": 70.5, "observedAt": at}, "sonometerClass": "1"},
                     headers=link("Environment"))
    assert r.status_code == 207
    assert r.json() == {"updated": ["LAeq"], "notUpdated": [
        {"attributeName": "sonometerClass", "reason": "not a measured attribute of NoiseLevelObserved"}]}
    assert readings(ngsi_lab.url, "noise-1", "noise")[-1][1] == 70.5
    bad = [({"LAeq": {"value": "loud", "observedAt": at}}, "numeric"),
           ({"LAeq": {"value": 50, "observedAt": at, "unitCode": "KGM"}}, "unitCode"),
           ({"LAeq": {"value": 50, "observedAt": "yesterday"}}, "observedAt")]
    for body, word in bad:
        r = client.patch(url, json=body, headers=link("Environment"))
        assert r.status_code == 400 and r.json()["type"] == ERR + "BadRequestData" and word in r.json()["detail"], r.text


def test_refused_packs_are_dead_letters_with_their_reason(client: TestClient, ngsi_lab: NgsiLab) -> None:
    with psycopg.connect(ngsi_lab.url, autocommit=True) as conn:
        conn.execute("UPDATE devices SET enabled = false WHERE device = 'air-2'")
    before = counters(ngsi_lab.url)
    r = client.patch(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:lab:air-2/attrs", headers=link("Environment"),
                     json={"pm25": {"value": 5, "observedAt": iso(T0 + timedelta(hours=1))}})
    assert r.status_code == 400 and "device_disabled" in r.json()["detail"]
    with psycopg.connect(ngsi_lab.url) as conn:
        reason, topic = conn.execute("SELECT reason, topic FROM dead_letters ORDER BY id DESC LIMIT 1").fetchone()
    assert (reason, topic) == ("device_disabled", "lab/lab/air-2/up")
    assert counters(ngsi_lab.url)["packs_dead_lettered"] == before["packs_dead_lettered"] + 1


def test_creating_an_entity_for_a_new_device_onboards_it(client: TestClient, ngsi_lab: NgsiLab,
                                                         tenant: Tenant) -> None:
    entity = {"id": "urn:ngsi-ld:AirQualityObserved:lab:air-new", "type": "AirQualityObserved",
              "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.75, 58.96]}},
              "no2": {"type": "Property", "value": 17.0, "observedAt": iso(T0), "unitCode": "GQ"}}
    consumer = add_key(ngsi_lab.url, tenant, "consumer")
    r = client.post(f"{BASE}/entities", json=entity, headers={**link("Environment"), **consumer.headers})
    assert r.status_code == 403
    r = client.post(f"{BASE}/entities", json=entity, headers=link("Environment"))
    assert r.status_code == 201, r.text
    with psycopg.connect(ngsi_lab.url) as conn:
        assert conn.execute("SELECT org, lat, lon FROM devices WHERE device = 'air-new'").fetchone() == (
            "lab", 58.96, 5.75)
    assert readings(ngsi_lab.url, "air-new", "no2")[0][1] == 17.0
    served = client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:lab:air-new", headers=link("Environment"),
                        params={"format": "keyValues"}).json()
    assert served["no2"] == 17.0 and served["location"]["coordinates"] == [5.75, 58.96]
    errors = [e.message for e in validator("AirQualityObserved").iter_errors(served)]
    assert not errors, errors
    assert client.post(f"{BASE}/entities", json=entity, headers=link("Environment")).status_code == 409
    # another organisation's id is not ours to write
    theirs = dict(entity, id="urn:ngsi-ld:AirQualityObserved:other:air-x")
    assert client.post(f"{BASE}/entities", json=theirs, headers=link("Environment")).status_code == 403
    # a device entity takes its model's attributes only
    extra = dict(entity, id="urn:ngsi-ld:AirQualityObserved:lab:air-3", colour={"type": "Property", "value": "red"})
    r = client.post(f"{BASE}/entities", json=extra, headers=link("Environment"))
    assert r.status_code == 400 and "colour" in r.json()["detail"]


def test_linked_context_entity_feeds_the_device_series(client: TestClient, ngsi_lab: NgsiLab) -> None:
    spot = {"id": "urn:ngsi-ld:ParkingSpot:p-17", "type": "ParkingSpot", "@context": [BUILDING_CONTEXT],
            "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:lab:traffic-1"},
            "occupancy": {"type": "Property", "value": 1, "observedAt": iso(T0 + timedelta(minutes=5))}}
    assert client.post(f"{BASE}/entities", json=spot, headers=LD).status_code == 201
    assert readings(ngsi_lab.url, "traffic-1", "occupancy") == [(T0 + timedelta(minutes=5), 1.0, None)]


def test_linked_context_entity_keeps_the_history_of_other_values(client: TestClient, ngsi_lab: NgsiLab) -> None:
    """Text, boolean and JSON values with observedAt go to the typed store; the temporal API serves them."""
    at = [iso(T0 + timedelta(minutes=m)).replace("Z", ".000000Z") for m in range(4)]   # as the face writes times
    context = dict(BUILDING_CONTEXT, status="https://example.org/city#status", free="https://example.org/city#free",
                   sign="https://example.org/city#sign")
    spot = {"id": "urn:ngsi-ld:ParkingSpot:p-18", "type": "ParkingSpot", "@context": [context],
            "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:lab:traffic-1"},
            "status": {"type": "Property", "value": "free", "observedAt": at[0]},
            "free": {"type": "Property", "value": True, "observedAt": at[0]},
            "sign": {"type": "Property", "value": {"text": "P", "lit": True}, "observedAt": at[0]},
            "occupancy": {"type": "Property", "value": 0, "observedAt": at[0]}}
    assert client.post(f"{BASE}/entities", json=spot, headers=LD).status_code == 201, spot
    r = client.post(f"{BASE}/temporal/entities/urn:ngsi-ld:ParkingSpot:p-18/attrs", headers=LD, json={
        "@context": [context],
        "status": [{"type": "Property", "value": "occupied", "observedAt": at[1]},
                   {"type": "Property", "value": "free", "observedAt": at[2]}],
        "free": [{"type": "Property", "value": False, "observedAt": at[1]}],
        "occupancy": [{"type": "Property", "value": 1, "observedAt": at[1]}]})
    assert r.status_code == 204, r.text
    with psycopg.connect(ngsi_lab.url) as conn:
        typed = conn.execute(
            "SELECT s.quantity, t.value_text, t.value_bool, t.value_data FROM typed_readings t"
            " JOIN series s ON s.id = t.series_id WHERE s.device = 'traffic-1' ORDER BY s.quantity, t.time").fetchall()
    assert [(q, t, b) for q, t, b, _ in typed] == [
        ("free", None, True), ("free", None, False), ("sign", None, None),
        ("status", "free", None), ("status", "occupied", None), ("status", "free", None)]
    assert json.loads(bytes(typed[2][3])) == {"text": "P", "lit": True}

    url = f"{BASE}/temporal/entities/urn:ngsi-ld:ParkingSpot:p-18"
    history = client.get(url, params={"options": "temporalValues"})
    assert history.status_code == 200, history.text
    body = {k.rsplit("#", 1)[-1]: v for k, v in history.json().items()}   # no @context sent: full IRIs
    assert body["status"]["values"] == [["free", at[0]], ["occupied", at[1]], ["free", at[2]]]
    assert body["free"]["values"] == [[True, at[0]], [False, at[1]]]
    assert body["sign"]["values"] == [[{"text": "P", "lit": True}, at[0]]]
    assert body["occupancy"]["values"] == [[0.0, at[0]], [1.0, at[1]]]
    last = client.get(url, params={"lastN": 1, "attrs": "status", "timerel": "before", "timeAt": at[2]}).json()
    assert last["status"] == [{"type": "Property", "value": "occupied", "observedAt": at[1]}]


def test_deleting_an_entity_removes_its_history_through_erasure(client: TestClient, ngsi_lab: NgsiLab) -> None:
    entity = "urn:ngsi-ld:AirQualityObserved:lab:air-2"
    assert client.get(f"{BASE}/entities/{entity}", headers=link("Environment")).status_code == 200
    assert client.delete(f"{BASE}/entities/{entity}").status_code == 204
    assert readings(ngsi_lab.url, "air-2", "pm2_5") == []
    with psycopg.connect(ngsi_lab.url) as conn:
        receipt = conn.execute("SELECT org, series_ids, deleted FROM erasures").fetchall()
        changes = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY id")]
        aggregates = conn.execute("SELECT count(*) FROM aggregates WHERE series_id = %s",
                                  (ngsi_lab.series[("air-2", "pm2_5")],)).fetchone()[0]
    assert receipt == [("lab", [ngsi_lab.series[("air-2", "pm2_5")]], receipt[0][2])]
    assert receipt[0][2]["readings"] == 3 and aggregates == 0
    assert changes[-2:] == ["gdpr.erasure", "ngsild.entity.delete"]
    assert client.get(f"{BASE}/entities/{entity}").json()["type"] == ERR + "ResourceNotFound"
    assert client.get(f"{BASE}/temporal/entities/{entity}").status_code == 404
    assert client.delete(f"{BASE}/temporal/entities/{entity}").status_code == 404

    # a context entity linked to a device goes with the series its attributes fed
    spot = {"id": "urn:ngsi-ld:ParkingSpot:p-19", "type": "ParkingSpot", "@context": [BUILDING_CONTEXT],
            "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:lab:traffic-1"},
            "occupancy": {"type": "Property", "value": 1, "observedAt": iso(T0 + timedelta(minutes=7))}}
    assert client.post(f"{BASE}/entities", json=spot, headers=LD).status_code == 201
    assert len(readings(ngsi_lab.url, "traffic-1", "occupancy")) == 1
    assert client.delete(f"{BASE}/temporal/entities/urn:ngsi-ld:ParkingSpot:p-19").status_code == 204
    assert readings(ngsi_lab.url, "traffic-1", "occupancy") == []
    assert len(readings(ngsi_lab.url, "traffic-1", "speed")) == 3      # the device's other series stay
    assert client.get(f"{BASE}/entities/urn:ngsi-ld:ParkingSpot:p-19").status_code == 404


def test_temporal_backfill(client: TestClient, ngsi_lab: NgsiLab) -> None:
    start = T0 + timedelta(days=1)
    instances = [{"type": "Property", "value": float(i), "observedAt": iso(start + timedelta(minutes=i)),
                  "unitCode": "GQ"} for i in range(120)]
    r = client.post(f"{BASE}/temporal/entities/urn:ngsi-ld:AirQualityObserved:lab:air-2/attrs",
                    json={"pm25": instances}, headers=link("Environment"))
    assert r.status_code == 204, r.text
    assert len(readings(ngsi_lab.url, "air-2", "pm2_5")) == 3 + 120
    history = client.get(f"{BASE}/temporal/entities/urn:ngsi-ld:AirQualityObserved:lab:air-2",
                         headers=link("Environment"),
                         params={"timerel": "after", "timeAt": iso(start - timedelta(seconds=1)),
                                 "options": "temporalValues", "attrs": "pm25"}).json()
    assert [v for v, _ in history["pm25"]["values"]] == [float(i) for i in range(120)]
    # the pipeline merged 60 s aggregates for the backfilled minutes
    with psycopg.connect(ngsi_lab.url) as conn:
        n = conn.execute("SELECT count(*) FROM aggregates a JOIN series s ON s.id = a.series_id"
                         " WHERE s.device = 'air-2' AND a.width_s = 60 AND a.bucket >= %s", (start,)).fetchone()[0]
    assert n == 120
    # a new device's history creates it
    r = client.post(f"{BASE}/temporal/entities", headers=link("Weather"), json={
        "id": "urn:ngsi-ld:WeatherObserved:lab:mast-1", "type": "WeatherObserved",
        "windSpeed": [{"type": "Property", "value": 3.5, "observedAt": iso(start)},
                      {"type": "Property", "value": 4.0, "observedAt": iso(start + timedelta(minutes=1))}]})
    assert r.status_code == 201, r.text
    assert [v for _, v, _ in readings(ngsi_lab.url, "mast-1", "wind_speed")] == [3.5, 4.0]
    r = client.post(f"{BASE}/temporal/entities/urn:ngsi-ld:AirQualityObserved:lab:air-2/attrs",
                    json={"pm25": [{"type": "Property", "value": 1.0}]}, headers=link("Environment"))
    assert r.status_code == 400 and "observedAt" in r.json()["detail"]


def test_write_errors(client: TestClient) -> None:
    assert client.post(f"{BASE}/entities", content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    r = client.post(f"{BASE}/entities", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["type"] == ERR + "InvalidRequest"
    r = client.post(f"{BASE}/entities", json={"id": "not a uri", "type": "X"})
    assert r.status_code == 400 and r.json()["type"] == ERR + "BadRequestData"
    r = client.post(f"{BASE}/entities", json={"id": "urn:x:1", "type": "X", "@context": []})
    assert r.status_code == 400 and "Link header" in r.json()["detail"]
    r = client.post(f"{BASE}/entities", json={"id": "urn:x:1", "type": "X"}, headers=LD)
    assert r.status_code == 400 and "@context" in r.json()["detail"]
    r = client.post(f"{BASE}/entities", json={"id": "urn:x:1", "type": "X", "p": {"type": "Property"}})
    assert r.status_code == 400 and "non-null value" in r.json()["detail"]
    r = client.post(f"{BASE}/entities", json={"id": "urn:x:1", "type": "X",
                                              "location": {"type": "GeoProperty", "value": {"type": "Point"}}})
    assert r.status_code == 400 and "coordinates" in r.json()["detail"]
    r = client.post(f"{BASE}/entityOperations/create", json=[
        {"id": "urn:x:1", "type": "X"}, {"id": "urn:x:1", "type": "X"}, {"id": "bad id", "type": "X"}])
    assert r.status_code == 207
    assert r.json()["success"] == ["urn:x:1"]
    assert [e["error"]["type"] for e in r.json()["errors"]] == [ERR + "BadRequestData", ERR + "AlreadyExists"]
    r = client.post(f"{BASE}/entityOperations/delete", json=["urn:x:1", "urn:x:2"])
    assert r.status_code == 207 and r.json()["success"] == ["urn:x:1"]
    r = client.delete(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:other:air-9")
    assert r.status_code == 404 and r.json()["type"] == ERR + "ResourceNotFound"    # not the key's organisation


def test_merge_replace_and_single_attribute_operations(client: TestClient, ngsi_lab: NgsiLab,
                                                       city_context: str) -> None:
    assert client.post(f"{BASE}/entities", json=building(), headers=LD).status_code == 201
    url = f"{BASE}/entities/urn:ngsi-ld:Building:town-hall"
    headers = city(city_context)
    assert client.patch(url, json={"floors": 7, "height": {"value": 31, "unitCode": "MTR"}},
                        headers=headers).status_code == 204
    body = client.get(url, headers=headers).json()
    assert body["floors"]["value"] == 7 and body["height"] == {"type": "Property", "value": 31, "unitCode": "MTR"}
    assert body["category"]["value"] == "civic"
    r = client.patch(f"{url}/attrs/floors", json={"value": 8, "observedAt": "2025-03-01T12:00:00Z"}, headers=headers)
    assert r.status_code == 204, r.text
    assert client.get(url, headers=headers).json()["floors"] == {
        "type": "Property", "value": 8, "observedAt": "2025-03-01T12:00:00.000000Z"}
    assert client.patch(f"{url}/attrs/nothing", json={"value": 1}, headers=headers).status_code == 404
    assert client.delete(f"{url}/attrs/category", headers=headers).status_code == 204
    assert "category" not in client.get(url, headers=headers).json()
    assert client.delete(f"{url}/attrs/category", headers=headers).json()["type"] == ERR + "ResourceNotFound"
    r = client.put(url, json={"type": "Building", "floors": 1}, headers=headers)
    assert r.status_code == 204, r.text
    replaced = client.get(url, headers=headers, params={"format": "keyValues"}).json()
    assert replaced == {"id": "urn:ngsi-ld:Building:town-hall", "type": "Building", "floors": 1}
    # a device entity's single attribute is an observation
    r = client.patch(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:lab:air-1/attrs/pm25", headers=link("Environment"),
                     json={"value": 77.0, "observedAt": iso(T0 + timedelta(hours=2))})
    assert r.status_code == 204, r.text
    assert readings(ngsi_lab.url, "air-1", "pm2_5")[-1][1] == 77.0
