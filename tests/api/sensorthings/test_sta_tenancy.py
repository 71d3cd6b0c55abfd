"""Tenancy of the SensorThings face: exactly what /v1 lets the key see, reads
audited and metered per grant."""

from __future__ import annotations

import base64

import psycopg
from sta_lab import ROOT, StaLab, client_of
from testbed import add_key


def _names(client, path: str) -> list[str]:
    response = client.get(ROOT + path, params={"$orderby": "name"})
    assert response.status_code == 200, response.text
    return [e["name"] for e in response.json()["value"]]


def test_each_organisation_sees_its_own_and_granted_data(sta_lab: StaLab):
    with client_of(sta_lab, sta_lab.other.headers) as other:
        assert _names(other, "/Things") == ["other-1", "other-2"]
        assert _names(other, "/Datastreams") == ["other-1/pm10", "other-2/co2"]
        assert other.get(f"{ROOT}/Datastreams({sta_lab.series['air-1/pm2_5']})").status_code == 404
        assert other.get(f"{ROOT}/Datastreams({sta_lab.series['air-1/pm2_5']})/Observations").status_code == 404
        assert other.get(f"{ROOT}/Observations", params={"$filter": "Datastream/name eq 'air-1/pm2_5'"}).json() == {
            "value": []}
    with client_of(sta_lab, sta_lab.city.headers) as city:
        for path in ("/Things", "/Datastreams", "/Locations", "/Sensors", "/ObservedProperties",
                     "/FeaturesOfInterest"):
            assert _names(city, path) == [], path
        assert city.get(f"{ROOT}/HistoricalLocations").json()["value"] == []
        assert city.get(f"{ROOT}/Observations").json()["value"] == []
    with client_of(sta_lab, sta_lab.lab.headers) as lab:
        assert "other-1/pm10" in _names(lab, "/Datastreams") and "other-2/co2" not in _names(lab, "/Datastreams")
        assert "Carbon dioxide" not in _names(lab, "/ObservedProperties")


def test_a_key_is_required_and_basic_auth_carries_it(sta_lab: StaLab):
    with client_of(sta_lab, {}) as anonymous:
        assert anonymous.get(ROOT).status_code == 200   # the landing page holds no data
        assert anonymous.get(f"{ROOT}/Things").status_code == 401
        assert anonymous.get(f"{ROOT}/Things", headers={"Authorization": "Bearer cl_nope.nope"}).status_code == 401
        basic = base64.b64encode(f"lab:{sta_lab.lab.key}".encode()).decode()
        response = anonymous.get(f"{ROOT}/Things", headers={"Authorization": f"Basic {basic}"})
        assert response.status_code == 200 and len(response.json()["value"]) == 4
        response = anonymous.get(f"{ROOT}/Things", headers={"X-API-Key": sta_lab.city.key})
        assert response.status_code == 200 and response.json()["value"] == []


def test_observation_reads_are_audited_and_metered_per_grant(fresh_lab: StaLab):
    pm10 = fresh_lab.series["other-1/pm10"]
    with client_of(fresh_lab, fresh_lab.lab.headers) as lab:
        body = lab.get(f"{ROOT}/Datastreams({pm10})/Observations", params={"$top": "3"}).json()
        assert len(body["value"]) == 3
        lab.get(f"{ROOT}/Things", params={"$expand": "Datastreams/Observations($top=1)"})
    with psycopg.connect(fresh_lab.url) as conn:
        rows = conn.execute("SELECT action, series_id, rows, org_id FROM audit_log WHERE series_id = %s ORDER BY id",
                            (pm10,)).fetchall()
        grant = conn.execute("SELECT requests, rows_served FROM access_grants WHERE id = %s",
                             (fresh_lab.grant,)).fetchone()
    assert rows == [("sta.read.observations", pm10, 3, fresh_lab.lab.org_id),
                    ("sta.read.observations", pm10, 1, fresh_lab.lab.org_id)]
    assert grant == (2, 4)


def test_only_providers_write_and_only_to_their_own_datastreams(fresh_lab: StaLab):
    consumer = add_key(fresh_lab.url, fresh_lab.lab, "consumer")
    body = {"result": 1.0, "phenomenonTime": "2025-03-02T00:00:00Z",
            "Datastream": {"@iot.id": fresh_lab.series["air-1/pm2_5"]}}
    with client_of(fresh_lab, consumer.headers) as client:
        assert client.post(f"{ROOT}/Observations", json=body).status_code == 403
    with client_of(fresh_lab, fresh_lab.lab.headers) as client:
        foreign = {**body, "Datastream": {"@iot.id": fresh_lab.series["other-1/pm10"]}}
        assert client.post(f"{ROOT}/Observations", json=foreign).status_code == 404


def test_same_device_name_in_two_organisations_stays_apart(fresh_lab: StaLab):
    with psycopg.connect(fresh_lab.url, autocommit=True) as conn:
        conn.execute("INSERT INTO devices (org, device, lat, lon) VALUES ('other', 'air-1', 60.0, 11.0)")
        conn.execute("INSERT INTO series (org, device, quantity, unit) VALUES ('other', 'air-1', 'co2', 'ppm')")
        conn.execute("INSERT INTO readings (time, series_id, value) SELECT now(), id, 415 FROM series"
                     " WHERE org = 'other' AND device = 'air-1'")
    with client_of(fresh_lab, fresh_lab.lab.headers) as lab:
        assert _names(lab, "/Things") == ["air-1", "gw-3", "noise-2", "other-1"]
        thing = fresh_lab.things["air-1"]
        assert _names(lab, f"/Things({thing})/Datastreams") == ["air-1/no2", "air-1/pm2_5", "air-1/temperature"]
        assert lab.get(f"{ROOT}/Observations", params={"$filter": "result eq 415"}).json()["value"] == []
    with client_of(fresh_lab, fresh_lab.other.headers) as other:
        things = other.get(f"{ROOT}/Things", params={"$filter": "name eq 'air-1'", "$expand": "Datastreams,Locations"})
        [air] = things.json()["value"]
        assert air["@iot.id"] != fresh_lab.things["air-1"]
        assert [d["name"] for d in air["Datastreams"]] == ["air-1/co2"]
        assert air["Locations"][0]["location"]["coordinates"] == [11.0, 60.0]
