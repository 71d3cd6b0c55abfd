"""OGC 18-088 (SensorThings API 1.1) requirements, one test per requirement,
named by the requirement's id (http://www.opengis.net/spec/iot_sensing/1.1/req/...).

Conformance classes: core (datamodel, resource-path, request-data), filtering
(request-data/filter ...), create-update-delete (creation: Observations, and
Things and Datastreams as device onboarding; no update or delete), data array.
The MQTT classes are not implemented (docs/sensorthings.md).
"""

from __future__ import annotations

import re

import psycopg
import pytest
from sta_lab import PM25_READINGS, ROOT, StaLab, client_of

REQ = "http://www.opengis.net/spec/iot_sensing/1.1/req/"
BASE = f"http://testserver{ROOT}"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def get(client, path: str, status: int = 200, **params):
    response = client.get(ROOT + path, params=params)
    assert response.status_code == status, response.text
    return response.json()


def entities(client, entity_set: str) -> list[dict]:
    body = get(client, f"/{entity_set}")
    assert body["value"], f"{entity_set} is empty in the test lab"
    return body["value"]


def check_entities(client, entity_set: str, mandatory: set[str], relations: set[str]) -> None:
    for entity in entities(client, entity_set):
        assert mandatory <= set(entity), (entity_set, mandatory - set(entity))
        for name in mandatory - {"properties", "resultTime", "observedArea", "phenomenonTime"}:
            assert entity[name] is not None, (entity_set, name)
        for relation in relations:
            assert entity[f"{relation}@iot.navigationLink"] == f"{entity['@iot.selfLink']}/{relation}"


# datamodel ----------------------------------------------------------------------


def test_req_datamodel_entity_control_information_common_control_information(sta):
    for entity_set in ("Things", "Locations", "HistoricalLocations", "Datastreams", "Sensors",
                       "ObservedProperties", "Observations", "FeaturesOfInterest"):
        for entity in entities(sta, entity_set):
            key = entity["@iot.id"]
            shown = key if isinstance(key, int) else f"'{key}'"
            assert entity["@iot.selfLink"] == f"{BASE}/{entity_set}({shown})"
            assert get(sta, f"/{entity_set}({shown})")["@iot.id"] == key


def test_req_datamodel_thing_properties(sta):
    check_entities(sta, "Things", {"name", "description", "properties"}, set())


def test_req_datamodel_thing_relations(sta):
    check_entities(sta, "Things", set(), {"Locations", "HistoricalLocations", "Datastreams"})


def test_req_datamodel_location_properties(sta):
    check_entities(sta, "Locations", {"name", "description", "encodingType", "location"}, set())
    for location in entities(sta, "Locations"):
        assert location["encodingType"] == "application/geo+json" and location["location"]["type"] == "Point"


def test_req_datamodel_location_relations(sta):
    check_entities(sta, "Locations", set(), {"Things", "HistoricalLocations"})


def test_req_datamodel_historical_location_properties(sta):
    check_entities(sta, "HistoricalLocations", {"time"}, set())
    assert all(ISO.match(h["time"]) for h in entities(sta, "HistoricalLocations"))


def test_req_datamodel_historical_location_relations(sta):
    check_entities(sta, "HistoricalLocations", set(), {"Locations", "Thing"})


def test_req_datamodel_datastream_properties(sta):
    check_entities(sta, "Datastreams", {"name", "description", "unitOfMeasurement", "observationType",
                                        "observedArea", "phenomenonTime", "resultTime"}, set())
    for datastream in entities(sta, "Datastreams"):
        assert {"name", "symbol", "definition"} <= set(datastream["unitOfMeasurement"])
        assert datastream["observationType"] == \
            "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
        start, end = datastream["phenomenonTime"].split("/")
        assert ISO.match(start) and ISO.match(end) and start <= end


def test_req_datamodel_datastream_relations(sta):
    check_entities(sta, "Datastreams", set(), {"Thing", "Sensor", "ObservedProperty", "Observations"})


def test_req_datamodel_sensor_properties(sta):
    check_entities(sta, "Sensors", {"name", "description", "encodingType", "metadata"}, set())


def test_req_datamodel_sensor_relations(sta):
    check_entities(sta, "Sensors", set(), {"Datastreams"})


def test_req_datamodel_observed_property_properties(sta):
    check_entities(sta, "ObservedProperties", {"name", "definition", "description"}, set())
    assert all(p["definition"].startswith(("http", "urn:")) for p in entities(sta, "ObservedProperties"))


def test_req_datamodel_observed_property_relations(sta):
    check_entities(sta, "ObservedProperties", set(), {"Datastreams"})


def test_req_datamodel_observation_properties(sta):
    check_entities(sta, "Observations", {"phenomenonTime", "result", "resultTime"}, set())
    assert all(ISO.match(o["phenomenonTime"]) for o in entities(sta, "Observations"))


def test_req_datamodel_observation_relations(sta):
    check_entities(sta, "Observations", set(), {"Datastream", "FeatureOfInterest"})


def test_req_datamodel_feature_of_interest_properties(sta):
    check_entities(sta, "FeaturesOfInterest", {"name", "description", "encodingType", "feature"}, set())


def test_req_datamodel_feature_of_interest_relations(sta):
    check_entities(sta, "FeaturesOfInterest", set(), {"Observations"})


# resource-path -------------------------------------------------------------------


def test_req_resource_path_resource_path_to_entities(sta, sta_lab: StaLab):
    thing = sta_lab.things["air-1"]
    series = sta_lab.series["air-1/no2"]
    assert {v["name"] for v in get(sta, "")["value"]} >= {"Things", "Observations"}      # service root
    assert len(get(sta, "/Things")["value"]) == 4                                          # collection
    assert get(sta, f"/Things({thing})")["name"] == "air-1"                                 # entity
    assert get(sta, f"/Things({thing})/name") == {"name": "air-1"}                           # property
    assert sta.get(f"{ROOT}/Things({thing})/name/$value").text == "air-1"                   # raw value
    assert len(get(sta, f"/Things({thing})/Datastreams")["value"]) == 3                      # navigation
    assert get(sta, f"/Datastreams({series})/Thing")["@iot.id"] == thing                    # to one
    assert get(sta, f"/Datastreams({series})/Thing/Datastreams({series})")["@iot.id"] == series
    assert get(sta, f"/Things({thing})/Datastreams/$ref")["value"][0] == {
        "@iot.selfLink": f"{BASE}/Datastreams({sta_lab.series['air-1/pm2_5']})"}            # associations
    assert get(sta, f"/Datastreams({series})/Thing/$ref") == {"@iot.selfLink": f"{BASE}/Things({thing})"}


# request-data (core and filtering) ------------------------------------------------


def test_req_request_data_order(sta, sta_lab: StaLab):
    # $filter, then $count over the filtered set, $orderby, $skip, $top, then $expand and $select
    body = get(sta, f"/Datastreams({sta_lab.series['air-1/pm2_5']})/Observations", **{
        "$filter": "result ge 10", "$count": "true", "$orderby": "result desc", "$skip": "2", "$top": "3",
        "$select": "result,Datastream", "$expand": "Datastream($select=name)"})
    assert body["@iot.count"] == PM25_READINGS - 20
    assert [o["result"] for o in body["value"]] == [58.5, 58.0, 57.5]
    assert body["value"][0] == {"result": 58.5, "Datastream": {"name": "air-1/pm2_5"}}


def test_req_request_data_expand(sta, sta_lab: StaLab):
    thing = get(sta, f"/Things({sta_lab.things['air-1']})", **{
        "$expand": "Datastreams/ObservedProperty,Locations($select=name)"})
    assert {d["ObservedProperty"]["name"] for d in thing["Datastreams"]} == {"PM2.5", "Nitrogen dioxide",
                                                                             "Air temperature"}
    assert thing["Locations"] == [{"name": "air-1"}]
    assert "Datastreams@iot.navigationLink" not in thing


def test_req_request_data_select(sta, sta_lab: StaLab):
    body = get(sta, "/Things", **{"$select": "name", "$filter": "name eq 'noise-2'"})
    assert body["value"] == [{"name": "noise-2"}]
    body = get(sta, "/Things", **{"$select": "id,Datastreams", "$filter": "name eq 'noise-2'"})
    thing = sta_lab.things["noise-2"]
    assert body["value"] == [{"@iot.id": thing, "Datastreams@iot.navigationLink": f"{BASE}/Things({thing})/Datastreams"}]


def test_req_request_data_status_code(sta):
    assert get(sta, "/Things(424242)", 404)["status"] == 404
    assert get(sta, "/Things(424242)/Datastreams", 404)["status"] == 404
    assert get(sta, "/Things(424242)/name", 404)["status"] == 404


def test_req_request_data_query_status_code(sta):
    assert get(sta, "/Things", 501, **{"$apply": "aggregate(id with sum as s)"})["status"] == 501
    assert get(sta, "/Things", 400, **{"$filter": "name eq eq"})["status"] == 400


def test_req_request_data_orderby(sta):
    body = get(sta, "/Datastreams", **{"$orderby": "Thing/name desc, name"})
    assert [d["name"] for d in body["value"]] == ["other-1/pm10", "noise-2/noise", "gw-3/battery",
                                                  "air-1/no2", "air-1/pm2_5", "air-1/temperature"]


def test_req_request_data_top(sta):
    assert len(get(sta, "/Observations", **{"$top": "7"})["value"]) == 7
    assert get(sta, "/Observations", **{"$top": "0"})["value"] == []


def test_req_request_data_skip(sta, sta_lab: StaLab):
    path = f"/Datastreams({sta_lab.series['air-1/pm2_5']})/Observations"
    body = get(sta, path, **{"$skip": "117", "$orderby": "phenomenonTime"})
    assert [o["result"] for o in body["value"]] == [58.5, 59.0, 59.5]


def test_req_request_data_count(sta):
    assert get(sta, "/Things", **{"$count": "true", "$top": "1"})["@iot.count"] == 4
    assert "@iot.count" not in get(sta, "/Things", **{"$count": "false"})
    thing = get(sta, "/Things", **{"$filter": "name eq 'air-1'", "$expand": "Datastreams($count=true;$top=1)"})
    assert thing["value"][0]["Datastreams@iot.count"] == 3 and len(thing["value"][0]["Datastreams"]) == 1


def test_req_request_data_filter(sta):
    body = get(sta, "/Things", **{"$filter": "Datastreams/ObservedProperty/name eq 'Noise level LAeq'"})
    assert [t["name"] for t in body["value"]] == ["noise-2"]


@pytest.mark.parametrize(("expression", "count"), [
    ("result eq 20", 1), ("result ne 20", 2), ("result gt 20", 2), ("result ge 21", 2), ("result lt 21", 1),
    ("result le 21", 2), ("result gt 20 and result lt 22", 1), ("result eq 20 or result eq 22", 2),
    ("not (result eq 20)", 2), ("result add 1 eq 21", 1), ("result sub 1 eq 19", 1), ("result mul 2 eq 40", 1),
    ("result div 2 eq 10", 1), ("result mod 3 eq 0", 1), ("(result add 1) mul 2 eq 42", 1),
])
def test_req_request_data_built_in_filter_operations(sta, sta_lab: StaLab, expression, count):
    body = get(sta, f"/Datastreams({sta_lab.series['air-1/no2']})/Observations", **{"$filter": expression})
    assert len(body["value"]) == count


POLYGON = "geography'POLYGON ((5.6 58.9, 5.8 58.9, 5.8 59.0, 5.6 59.0, 5.6 58.9))'"


@pytest.mark.parametrize(("entity_set", "expression", "count"), [
    ("Things", "substringof('ir-', name)", 1), ("Things", "endswith(name, '-1')", 2),
    ("Things", "startswith(name, 'no')", 1), ("Things", "length(name) eq 7", 2),
    ("Things", "indexof(name, 'ise') eq 2", 1), ("Things", "substring(name, 6) eq '2'", 1),
    ("Things", "tolower(name) eq 'gw-3'", 1), ("Things", "toupper(name) eq 'GW-3'", 1),
    ("Things", "trim(name) eq 'gw-3'", 1), ("Things", "concat(name, '!') eq 'gw-3!'", 1),
    ("Observations", "year(phenomenonTime) eq 2025 and month(phenomenonTime) eq 3", 100),
    ("Observations", "day(phenomenonTime) eq 1 and hour(phenomenonTime) eq 12 and minute(phenomenonTime) eq 59", 1),
    ("Observations", "second(phenomenonTime) eq 0 and fractionalseconds(phenomenonTime) eq 0 and "
                     "Datastream/name eq 'air-1/no2'", 3),
    ("Observations", "date(resultTime) eq 2025-03-01 and time(resultTime) eq 12:20:00 and result eq 22", 1),
    ("Observations", "totaloffsetminutes(phenomenonTime) eq 0 and result eq 22", 2),
    ("Observations", "phenomenonTime lt now() and phenomenonTime gt mindatetime() and "
                     "phenomenonTime lt maxdatetime() and result eq 22", 2),
    ("Observations", "round(result) eq 30 and Datastream/name eq 'air-1/pm2_5'", 2),
    ("Observations", "floor(result) eq 30 and Datastream/name eq 'air-1/pm2_5'", 2),
    ("Observations", "ceiling(result) eq 30 and Datastream/name eq 'air-1/pm2_5'", 2),
    ("Locations", "geo.distance(location, geography'POINT (5.70 58.95)') lt 0.1", 2),
    ("Locations", "geo.length(geography'LINESTRING (30 10, 10 30, 40 40)') gt 59.9", 3),
    ("Locations", f"geo.intersects(location, {POLYGON})", 2),
    ("Locations", "st_equals(location, geography'POINT (5.7 58.95)')", 1),
    ("Locations", f"st_disjoint(location, {POLYGON})", 1),
    ("Locations", "st_touches(location, geography'LINESTRING (5.7 58.95, 5.9 58.95)')", 1),
    ("Locations", f"st_within(location, {POLYGON})", 2),
    ("Locations", f"st_overlaps(location, {POLYGON})", 0),
    ("Locations", "st_crosses(location, geography'LINESTRING (5.6 58.95, 5.9 58.95)')", 0),
    ("Locations", f"st_intersects(location, {POLYGON})", 2),
    ("Locations", "st_contains(location, geography'POINT (5.7 58.95)')", 1),
    ("Locations", f"st_relate(location, {POLYGON}, 'T********')", 2),
])
def test_req_request_data_built_in_query_functions(sta, entity_set, expression, count):
    assert len(get(sta, f"/{entity_set}", **{"$filter": expression})["value"]) == count


def test_req_request_data_pagination(sta, sta_lab: StaLab):
    body = get(sta, f"/Datastreams({sta_lab.series['air-1/pm2_5']})/Observations",
               **{"$top": "100", "$orderby": "phenomenonTime"})
    assert len(body["value"]) == 100
    following = sta.get(body["@iot.nextLink"]).json()
    assert len(following["value"]) == PM25_READINGS - 100 and "@iot.nextLink" not in following
    assert following["value"][0]["result"] == 50.0


# create-update-delete (Observations) ---------------------------------------------


THING = {
    "name": "air-9", "description": "a new air quality station",
    "Locations": [{"name": "pier", "description": "the pier", "encodingType": "application/geo+json",
                   "location": {"type": "Point", "coordinates": [5.72, 58.97]}}],
    "Datastreams": [{
        "name": "pm10 at the pier", "description": "PM10",
        "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
        "unitOfMeasurement": {"name": "microgram per cubic metre", "symbol": "µg/m³",
                              "definition": "http://qudt.org/vocab/unit/MicroGM-PER-M3"},
        "ObservedProperty": {"name": "PM10", "definition": "https://smartdatamodels.org/dataModel.Environment/pm10",
                             "description": "particulate matter < 10 um"},
        "Sensor": {"name": "SDS011", "description": "laser dust sensor", "encodingType": "text/plain",
                   "metadata": "SDS011"}}],
}


def test_req_create_update_delete_create_entity(fresh_lab: StaLab):
    series = fresh_lab.series["noise-2/noise"]
    with client_of(fresh_lab, fresh_lab.lab.headers) as client:
        response = client.post(f"{ROOT}/Observations", json={
            "result": 61.5, "phenomenonTime": "2025-03-04T00:00:00Z", "Datastream": {"@iot.id": series}})
        assert response.status_code == 201
        assert client.get(response.headers["Location"]).json()["result"] == 61.5
        thing = client.post(f"{ROOT}/Things", json={"name": "bare-1", "description": "no sensors yet"})
        assert thing.status_code == 201
        assert client.get(thing.headers["Location"]).json()["name"] == "bare-1"
        # Sensors, ObservedProperties, Locations and FeaturesOfInterest follow from Things and Datastreams
        refused = client.post(f"{ROOT}/Sensors", json={"name": "x", "description": "y", "encodingType": "text/plain",
                                                        "metadata": "z"})
        assert refused.status_code == 501 and "Things" in refused.json()["detail"]


def test_req_create_update_delete_deep_insert(fresh_lab: StaLab):
    with client_of(fresh_lab, fresh_lab.lab.headers) as client:
        created = client.post(f"{ROOT}/Things", json=THING)
        thing = client.get(created.headers["Location"], params={
            "$expand": "Locations,Datastreams($expand=ObservedProperty,Sensor)"}).json()
    assert thing["name"] == "air-9"
    assert thing["Locations"][0]["location"] == {"type": "Point", "coordinates": [5.72, 58.97]}
    [datastream] = thing["Datastreams"]
    assert datastream["unitOfMeasurement"]["symbol"] == "µg/m³"
    assert datastream["ObservedProperty"]["name"] == "PM10" and datastream["Sensor"]["name"] == "air-9"
    with psycopg.connect(fresh_lab.url) as conn:
        assert conn.execute("SELECT quantity, unit FROM series WHERE device = 'air-9'").fetchall() == [
            ("pm10", "ug/m3")]


def test_req_create_update_delete_deep_insert_status_code(fresh_lab: StaLab):
    with client_of(fresh_lab, fresh_lab.lab.headers) as client:
        created = client.post(f"{ROOT}/Things", json=THING)
        assert created.status_code == 201
        assert created.json()["name"] == "air-9" and created.json()["@iot.selfLink"] == created.headers["Location"]
        assert re.fullmatch(rf"{BASE}/Things\(\d+\)", created.headers["Location"])
        assert client.post(f"{ROOT}/Things", json=THING).status_code == 409   # the device exists
        bad = {**THING, "name": "air-10", "Datastreams": [{**THING["Datastreams"][0],
                                                         "ObservedProperty": {"name": "mood"}}]}
        assert client.post(f"{ROOT}/Things", json=bad).status_code == 400
        assert client.get(f"{ROOT}/Things", params={"$filter": "name eq 'air-10'"}).json()["value"] == []


def test_req_create_update_delete_historical_location_auto_creation(fresh_lab: StaLab):
    with client_of(fresh_lab, fresh_lab.lab.headers) as client:
        location = client.post(f"{ROOT}/Things", json=THING).headers["Location"]
        [historical] = client.get(f"{location}/HistoricalLocations", params={"$expand": "Locations"}).json()["value"]
    assert ISO.match(historical["time"]) and historical["Locations"][0]["name"] == "air-9"


def test_req_create_update_delete_link_to_existing_entities(fresh_lab: StaLab):
    series = fresh_lab.series["noise-2/noise"]
    with client_of(fresh_lab, fresh_lab.lab.headers) as client:
        response = client.post(f"{ROOT}/Datastreams({series})/Observations",
                               json={"result": 62.0, "phenomenonTime": "2025-03-04T00:01:00Z"})
        assert response.status_code == 201
        link = response.headers["Location"]
        assert client.get(f"{link}/Datastream").json()["@iot.id"] == series
        assert client.get(f"{link}/FeatureOfInterest").json()["@iot.id"] == fresh_lab.things["noise-2"]
        # a Datastream linked to an existing Thing and ObservedProperty, then written to at once
        op = client.get(f"{ROOT}/ObservedProperties", params={"$filter": "name eq 'PM2.5'"}).json()["value"][0]
        created = client.post(f"{ROOT}/Datastreams", json={
            "name": "pm2.5 of noise-2", "description": "d", "observationType": "OM_Measurement",
            "unitOfMeasurement": {"name": "microgram per cubic metre", "symbol": "µg/m³", "definition": ""},
            "Thing": {"@iot.id": fresh_lab.things["noise-2"]}, "ObservedProperty": {"@iot.id": op["@iot.id"]}})
        assert created.status_code == 201
        datastream = client.get(created.headers["Location"], params={"$expand": "Thing"}).json()
        assert datastream["name"] == "noise-2/pm2_5" and datastream["Thing"]["name"] == "noise-2"
        written = client.post(f"{created.headers['Location']}/Observations",
                              json={"result": 7.5, "phenomenonTime": "2025-03-04T00:02:00Z"})
        assert written.status_code == 201
        assert client.get(written.headers["Location"]).json()["result"] == 7.5


# data array ------------------------------------------------------------------------


def test_req_data_array_data_array(fresh_lab: StaLab):
    series = fresh_lab.series["air-1/no2"]
    with client_of(fresh_lab, fresh_lab.lab.headers) as client:
        read = client.get(f"{ROOT}/Datastreams({series})/Observations",
                          params={"$resultFormat": "dataArray", "$select": "result", "$orderby": "result"}).json()
        assert read["value"][0]["components"] == ["result"] and read["value"][0]["dataArray"] == [[20.0], [21.0], [22.0]]
        created = client.post(f"{ROOT}/CreateObservations", json=[{
            "Datastream": {"@iot.id": series}, "components": ["result", "phenomenonTime"],
            "dataArray": [[1.0, "2025-03-05T00:00:00Z"], [2.0, "not a time"]]}])
        assert created.status_code == 201
        first, second = created.json()
        assert first.startswith(f"http://testserver{ROOT}/Observations(") and second == "error"
