"""PATCH, PUT and DELETE of Things, Locations, Datastreams and Sensors: registry changes."""

from __future__ import annotations

import psycopg
import pytest
from sta_lab import ROOT, StaLab, client_of


@pytest.fixture
def lab_client(fresh_lab: StaLab):
    with client_of(fresh_lab, fresh_lab.lab.headers) as client:
        yield client


def _one(url: str, query: str, *args):
    with psycopg.connect(url) as conn:
        return conn.execute(query, args).fetchone()


def test_patch_thing_disables_the_device_and_moves_it(fresh_lab: StaLab, lab_client):
    thing = fresh_lab.things["noise-2"]
    response = lab_client.patch(f"{ROOT}/Things({thing})", json={
        "properties": {"enabled": False},
        "Locations": [{"location": {"type": "Point", "coordinates": [5.8, 59.0]}}]})
    assert response.status_code == 200, response.text
    assert response.json()["properties"]["enabled"] is False
    assert _one(fresh_lab.url, "SELECT enabled, lat, lon FROM devices WHERE device = 'noise-2'") == (False, 59.0, 5.8)
    location = lab_client.get(f"{ROOT}/Things({thing})/Locations").json()["value"][0]
    assert location["location"] == {"type": "Point", "coordinates": [5.8, 59.0]}
    # an ingest pack of the disabled device now goes to the dead letters
    written = lab_client.post(f"{ROOT}/Datastreams({fresh_lab.series['noise-2/noise']})/Observations",
                              json={"result": 1.0, "phenomenonTime": "2025-03-02T10:00:00Z"})
    assert written.status_code == 422
    [action] = _one(fresh_lab.url, "SELECT action FROM audit_log WHERE action = 'thing.update'")
    assert action == "thing.update"


def test_patch_thing_links_a_location_by_id(fresh_lab: StaLab, lab_client):
    response = lab_client.patch(f"{ROOT}/Things({fresh_lab.things['gw-3']})",
                                json={"Locations": [{"@iot.id": fresh_lab.things["air-1"]}]})
    assert response.status_code == 200, response.text
    assert _one(fresh_lab.url, "SELECT lat, lon FROM devices WHERE device = 'gw-3'") == (58.9690, 5.7331)
    refused = lab_client.patch(f"{ROOT}/Things({fresh_lab.things['gw-3']})",
                               json={"Locations": [{"@iot.id": fresh_lab.things["other-1"]}]})
    assert refused.status_code == 400 and "Location" in refused.json()["detail"]


@pytest.mark.parametrize("body, word", [
    ({"name": "renamed"}, "device id"),
    ({"description": "a new text"}, "derived"),
    ({"properties": {"kind": "lora"}}, "properties.kind"),
    ({"properties": {"enabled": "no"}}, "enabled"),
    ({"Locations": [{"location": {"type": "Polygon", "coordinates": []}}]}, "Point"),
])
def test_patch_thing_refuses_what_the_registry_derives(fresh_lab: StaLab, lab_client, body, word):
    response = lab_client.patch(f"{ROOT}/Things({fresh_lab.things['air-1']})", json=body)
    assert response.status_code == 400 and word in response.json()["detail"]
    assert _one(fresh_lab.url, "SELECT enabled, lat FROM devices WHERE device = 'air-1'") == (True, 58.9690)


def test_put_thing_needs_the_mandatory_properties_and_takes_back_what_was_read(fresh_lab: StaLab, lab_client):
    link = f"{ROOT}/Things({fresh_lab.things['air-1']})"
    assert lab_client.put(link, json={"properties": {"enabled": False}}).status_code == 400
    read = lab_client.get(link).json()
    read["properties"]["enabled"] = False
    response = lab_client.put(link, json=read)
    assert response.status_code == 200, response.text
    assert response.json()["properties"]["enabled"] is False


def test_patch_location_moves_the_device(fresh_lab: StaLab, lab_client):
    response = lab_client.patch(f"{ROOT}/Locations({fresh_lab.things['air-1']})",
                                json={"location": {"type": "Point", "coordinates": [6.0, 60.0]}})
    assert response.status_code == 200, response.text
    assert response.json()["location"] == {"type": "Point", "coordinates": [6.0, 60.0]}
    assert lab_client.patch(f"{ROOT}/Locations({fresh_lab.things['gw-3']})",
                            json={"location": {"type": "Point", "coordinates": [6.0, 60.0]}}).status_code == 404


def test_patch_datastream_bounds_and_unit(fresh_lab: StaLab, lab_client):
    held = fresh_lab.series["air-1/no2"]
    response = lab_client.patch(f"{ROOT}/Datastreams({held})",
                                json={"properties": {"low": 0, "high": 500, "intervalSeconds": 30}})
    assert response.status_code == 200, response.text
    assert response.json()["properties"]["high"] == 500
    assert _one(fresh_lab.url, "SELECT low, high, interval_s FROM series WHERE id = %s", held) == (0, 500, 30)
    # its unit cannot change under its Observations
    changed = lab_client.patch(f"{ROOT}/Datastreams({held})", json={"unitOfMeasurement": {
        "name": "part per million", "symbol": "ppm", "definition": "http://qudt.org/vocab/unit/PPM"}})
    assert changed.status_code == 409
    assert lab_client.patch(f"{ROOT}/Datastreams({held})",
                            json={"properties": {"low": 9, "high": 1}}).status_code == 400
    assert lab_client.patch(f"{ROOT}/Datastreams({held})",
                            json={"Thing": {"@iot.id": fresh_lab.things["noise-2"]}}).status_code == 400
    # a new, empty Datastream may still change its ObservedProperty
    thing = fresh_lab.things["gw-3"]
    op = lab_client.get(f"{ROOT}/ObservedProperties", params={"$filter": "name eq 'PM2.5'"}).json()["value"][0]
    created = lab_client.post(f"{ROOT}/Things({thing})/Datastreams", json={
        "unitOfMeasurement": {"name": "microgram per cubic metre", "symbol": "µg/m³"},
        "ObservedProperty": {"@iot.id": op["@iot.id"]}})
    assert created.status_code == 201, created.text
    pm10 = lab_client.get(f"{ROOT}/ObservedProperties", params={"$filter": "name eq 'PM10'"}).json()["value"]
    moved = lab_client.patch(created.headers["Location"], json={"ObservedProperty": {"properties": {"quantity": "pm10"}}})
    assert moved.status_code == 200, moved.text
    assert moved.json()["name"] == "gw-3/pm10" and (pm10 == [] or pm10[0]["name"] == "PM10")


def test_delete_datastream_deletes_its_observations(fresh_lab: StaLab, lab_client):
    series = fresh_lab.series["air-1/temperature"]
    assert _one(fresh_lab.url, "SELECT count(*) FROM readings WHERE series_id = %s", series) == (10,)
    response = lab_client.delete(f"{ROOT}/Datastreams({series})")
    assert response.status_code == 200, response.text
    assert lab_client.get(f"{ROOT}/Datastreams({series})").status_code == 404
    assert _one(fresh_lab.url, "SELECT count(*) FROM readings WHERE series_id = %s", series) == (0,)
    assert _one(fresh_lab.url, "SELECT detail->>'readings' FROM audit_log WHERE action = 'series.delete'") == ("10",)
    # through the GDPR erasure: its receipt names the series and what was deleted
    assert _one(fresh_lab.url, "SELECT deleted->>'readings' FROM erasures WHERE %s = ANY(series_ids)", series) == ("10",)
    assert lab_client.delete(f"{ROOT}/Datastreams({series})").status_code == 404


def test_delete_thing_deletes_the_device_and_its_data(fresh_lab: StaLab, lab_client):
    thing = fresh_lab.things["air-1"]
    ids = [fresh_lab.series[f"air-1/{q}"] for q in ("pm2_5", "no2", "temperature")]
    with psycopg.connect(fresh_lab.url, autocommit=True) as conn:
        conn.execute("INSERT INTO aggregates (width_s, series_id, bucket, count, sum, min, max, last, last_time, m2)"
                     " VALUES (60, %s, '2025-03-01T12:00Z', 1, 1, 1, 1, 1, '2025-03-01T12:00Z', 0)", (ids[0],))
        conn.execute("INSERT INTO anomalies (time, series_id, value, score, kind)"
                     " VALUES ('2025-03-01T12:00Z', %s, 1, 9, 'spike')", (ids[0],))
    response = lab_client.delete(f"{ROOT}/Things({thing})")
    assert response.status_code == 200, response.text
    assert lab_client.get(f"{ROOT}/Things({thing})").status_code == 404
    for table in ("readings", "aggregates", "anomalies"):
        assert _one(fresh_lab.url, f"SELECT count(*) FROM {table} WHERE series_id = ANY(%s)", ids) == (0,)
    assert _one(fresh_lab.url, "SELECT count(*) FROM devices WHERE device = 'air-1'") == (0,)
    # the other devices' data is untouched
    assert _one(fresh_lab.url, "SELECT count(*) FROM readings WHERE series_id = %s",
                fresh_lab.series["noise-2/noise"]) == (5,)


def test_delete_sensor_deletes_its_datastreams_and_location_deletes_the_location(fresh_lab: StaLab, lab_client):
    thing = fresh_lab.things["noise-2"]
    assert lab_client.delete(f"{ROOT}/Sensors({thing})").status_code == 200
    assert lab_client.get(f"{ROOT}/Things({thing})/Datastreams").json()["value"] == []
    assert lab_client.delete(f"{ROOT}/Locations({thing})").status_code == 200
    assert lab_client.get(f"{ROOT}/Things({thing})/Locations").json()["value"] == []
    assert lab_client.get(f"{ROOT}/Things({thing})").json()["name"] == "noise-2"


def test_updates_are_for_the_owner_and_for_roles_that_onboard(fresh_lab: StaLab, lab_client):
    other_thing = fresh_lab.things["other-1"]
    assert lab_client.delete(f"{ROOT}/Things({other_thing})").status_code == 404
    assert lab_client.patch(f"{ROOT}/Things({other_thing})", json={"properties": {"enabled": False}}).status_code == 404
    with client_of(fresh_lab, fresh_lab.city.headers) as city:
        assert city.delete(f"{ROOT}/Things({fresh_lab.things['air-1']})").status_code in (403, 404)
    assert lab_client.delete(f"{ROOT}/Observations").status_code == 405
    assert lab_client.delete(f"{ROOT}/ObservedProperties(1)").status_code == 501
    assert _one(fresh_lab.url, "SELECT count(*) FROM devices WHERE device IN ('other-1', 'air-1')") == (2,)


def test_delete_of_a_datastream_with_alert_rules_is_refused(fresh_lab: StaLab, lab_client):
    series = fresh_lab.series["air-1/no2"]
    with psycopg.connect(fresh_lab.url, autocommit=True) as conn:
        conn.execute("INSERT INTO alert_rules (org, name, series_id, on_value, off_value)"
                     " VALUES ('lab', 'no2 high', %s, 200, 180)", (series,))
    for path in (f"Datastreams({series})", f"Things({fresh_lab.things['air-1']})"):
        response = lab_client.delete(f"{ROOT}/{path}")
        assert response.status_code == 409 and "alert rules" in response.json()["detail"]
    assert _one(fresh_lab.url, "SELECT count(*) FROM readings WHERE series_id = %s", series) == (3,)
