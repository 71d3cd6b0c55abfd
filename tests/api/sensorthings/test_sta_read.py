"""Reading the lab through the SensorThings face: entity sets, paths, query options."""

from __future__ import annotations

import pytest
from sta_lab import PM25_READINGS, ROOT, StaLab

STAVANGER = "POLYGON ((5.6 58.9, 5.8 58.9, 5.8 59.0, 5.6 59.0, 5.6 58.9))"


def get(client, path: str, status: int = 200, **params) -> dict:
    response = client.get(ROOT + path, params=params)
    assert response.status_code == status, response.text
    return response.json()


def names(body: dict) -> list[str]:
    return [e["name"] for e in body["value"]]


def test_landing_page_lists_every_entity_set_and_conformance(sta):
    body = get(sta, "")
    assert {v["name"] for v in body["value"]} == {
        "Things", "Locations", "HistoricalLocations", "Datastreams", "Sensors", "ObservedProperties",
        "Observations", "FeaturesOfInterest"}
    assert all(v["url"] == f"http://testserver{ROOT}/{v['name']}" for v in body["value"])
    assert "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data" in body["serverSettings"]["conformance"]


def test_things_are_devices_the_key_may_see(sta, sta_lab: StaLab):
    body = get(sta, "/Things", **{"$orderby": "name"})
    # own devices, and other-1 whose pm10 the lab bought; not other-2
    assert names(body) == ["air-1", "gw-3", "noise-2", "other-1"]
    air = body["value"][0]
    assert air["@iot.id"] == sta_lab.things["air-1"]
    assert air["@iot.selfLink"] == f"http://testserver{ROOT}/Things({air['@iot.id']})"
    assert air["Datastreams@iot.navigationLink"] == air["@iot.selfLink"] + "/Datastreams"
    assert air["properties"]["organisation"] == "lab"


def test_datastream_carries_unit_from_the_vocabulary_and_times(sta, sta_lab: StaLab):
    ds = get(sta, f"/Datastreams({sta_lab.series['air-1/pm2_5']})")
    assert ds["name"] == "air-1/pm2_5"
    assert ds["unitOfMeasurement"] == {"name": "microgram per cubic metre", "symbol": "µg/m³",
                                       "definition": "http://qudt.org/vocab/unit/MicroGM-PER-M3"}
    assert ds["observationType"].endswith("OM_Measurement")
    assert ds["observedArea"] == {"type": "Point", "coordinates": [5.7331, 58.969]}
    assert ds["phenomenonTime"] == "2025-03-01T12:00:00.000000Z/2025-03-01T13:59:00.000000Z"
    op = get(sta, f"/Datastreams({ds['@iot.id']})/ObservedProperty")
    assert op["name"] == "PM2.5" and op["definition"].endswith("pm25")


def test_navigation_property_value_and_ref(sta, sta_lab: StaLab):
    thing = sta_lab.things["air-1"]
    datastreams = get(sta, f"/Things({thing})/Datastreams", **{"$orderby": "id"})
    assert names(datastreams) == ["air-1/pm2_5", "air-1/no2", "air-1/temperature"]
    assert get(sta, f"/Things({thing})/Locations")["value"][0]["location"] == {
        "type": "Point", "coordinates": [5.7331, 58.969]}
    assert get(sta, f"/Things({thing})/HistoricalLocations")["value"][0]["@iot.id"] == thing
    assert get(sta, f"/Things({thing})/name") == {"name": "air-1"}
    response = sta.get(f"{ROOT}/Things({thing})/name/$value")
    assert response.status_code == 200 and response.text == "air-1"
    refs = get(sta, f"/Things({thing})/Datastreams/$ref", **{"$orderby": "id"})
    assert refs["value"][0] == {"@iot.selfLink": f"http://testserver{ROOT}/Datastreams({sta_lab.series['air-1/pm2_5']})"}
    sensor = get(sta, f"/Datastreams({sta_lab.series['air-1/no2']})/Sensor")
    assert sensor["name"] == "air-1" and sensor["encodingType"]
    obs = get(sta, f"/Datastreams({sta_lab.series['air-1/no2']})/Observations", **{"$orderby": "phenomenonTime"})
    assert [o["result"] for o in obs["value"]] == [20.0, 21.0, 22.0]
    one = get(sta, f"/Observations('{obs['value'][1]['@iot.id']}')")
    assert one["result"] == 21.0 and one["phenomenonTime"] == "2025-03-01T12:10:00.000000Z"
    foi = get(sta, f"/Observations('{one['@iot.id']}')/FeatureOfInterest")
    assert foi["feature"]["coordinates"] == [5.7331, 58.969]
    assert get(sta, f"/Observations('{one['@iot.id']}')/Datastream/Thing/name") == {"name": "air-1"}


def test_missing_entities_are_404(sta, sta_lab: StaLab):
    get(sta, "/Things(999999)", 404)
    get(sta, "/Observations('1-2')", 404)
    get(sta, "/Nothings", 404)
    get(sta, f"/Datastreams({sta_lab.series['other-2/co2']})", 404)  # exists, but not readable


def test_paging_with_next_link_and_count(sta, sta_lab: StaLab):
    path = f"/Datastreams({sta_lab.series['air-1/pm2_5']})/Observations"
    body = get(sta, path, **{"$top": "50", "$count": "true", "$orderby": "phenomenonTime"})
    assert body["@iot.count"] == PM25_READINGS and len(body["value"]) == 50
    seen = [o["result"] for o in body["value"]]
    while "@iot.nextLink" in body:
        response = sta.get(body["@iot.nextLink"])
        assert response.status_code == 200
        body = response.json()
        seen += [o["result"] for o in body["value"]]
    assert seen == [i / 2 for i in range(PM25_READINGS)]
    things = get(sta, "/Things", **{"$top": "3", "$orderby": "name"})
    assert "$skip=3" in things["@iot.nextLink"]
    assert [t["name"] for t in sta.get(things["@iot.nextLink"]).json()["value"]] == ["other-1"]


@pytest.mark.parametrize("order", [None, "phenomenonTime", "phenomenonTime desc", "resultTime asc"])
def test_observations_page_by_keyset_without_gaps_or_repeats(sta, order):
    params = {"$top": "37", "$count": "true", **({"$orderby": order} if order else {})}
    body = get(sta, "/Observations", **params)
    total = body["@iot.count"]
    ids = [o["@iot.id"] for o in body["value"]]
    times = [o["phenomenonTime"] for o in body["value"]]
    while "@iot.nextLink" in body:
        assert "$skiptoken=" in body["@iot.nextLink"] and "$skip=" not in body["@iot.nextLink"]
        body = sta.get(body["@iot.nextLink"]).json()
        assert body["@iot.count"] == total
        ids += [o["@iot.id"] for o in body["value"]]
        times += [o["phenomenonTime"] for o in body["value"]]
    assert len(ids) == len(set(ids)) == total == 120 + 3 + 10 + 5 + 2 + 4
    if order:
        assert times == sorted(times, reverse=order.endswith("desc"))
    get(sta, "/Observations", 400, **{"$skiptoken": "bogus"})


def test_orderby_several_keys_top_skip_select(sta):
    body = get(sta, "/Datastreams", **{"$orderby": "Thing/name desc,name asc", "$select": "name,id",
                                       "$top": "3", "$skip": "1"})
    assert body["value"] == [{"@iot.id": body["value"][0]["@iot.id"], "name": "noise-2/noise"},
                             {"@iot.id": body["value"][1]["@iot.id"], "name": "gw-3/battery"},
                             {"@iot.id": body["value"][2]["@iot.id"], "name": "air-1/no2"}]


def test_expand_nested_with_options(sta, sta_lab: StaLab):
    body = get(sta, "/Things", **{
        "$filter": "name eq 'air-1'",
        "$expand": "Datastreams($orderby=id;$select=name;$expand=Observations($orderby=phenomenonTime desc;$top=1;"
                   "$count=true)),Locations"})
    [thing] = body["value"]
    assert thing["Locations"][0]["name"] == "air-1"
    [pm25, no2, temp] = thing["Datastreams"]
    assert pm25["name"] == "air-1/pm2_5" and "unitOfMeasurement" not in pm25
    assert pm25["Observations"][0]["result"] == (PM25_READINGS - 1) / 2
    assert pm25["Observations@iot.count"] == PM25_READINGS
    assert "Observations@iot.nextLink" in pm25
    assert no2["Observations"][0]["result"] == 22.0
    obs = get(sta, f"/Datastreams({sta_lab.series['air-1/no2']})/Observations",
              **{"$expand": "Datastream/Thing", "$top": "1"})
    assert obs["value"][0]["Datastream"]["Thing"]["name"] == "air-1"


@pytest.mark.parametrize(("expression", "expected"), [
    ("result gt 21 and result le 22", [22.0]),
    ("result add 1 eq 22", [21.0]),
    ("result sub 1 eq 20 or result mul 2 eq 44", [21.0, 22.0]),
    ("result div 2 eq 10.5", [21.0]),
    ("result mod 2 eq 0", [20.0, 22.0]),
    ("-result lt -21.5", [22.0]),
    ("not (result ne 20)", [20.0]),
    ("result in (20, 22)", [20.0, 22.0]),
    ("phenomenonTime ge 2025-03-01T12:10:00Z", [21.0, 22.0]),
    ("phenomenonTime lt 2025-03-01T13:05:00+01:00", [20.0]),
    ("minute(phenomenonTime) eq 20 and hour(phenomenonTime) eq 12", [22.0]),
    ("year(phenomenonTime) eq 2025 and month(phenomenonTime) eq 3 and day(phenomenonTime) eq 1", [20.0, 21.0, 22.0]),
    ("second(phenomenonTime) eq 0 and fractionalseconds(phenomenonTime) eq 0", [20.0, 21.0, 22.0]),
    ("date(phenomenonTime) eq 2025-03-01 and totaloffsetminutes(phenomenonTime) eq 0", [20.0, 21.0, 22.0]),
    ("phenomenonTime gt mindatetime() and phenomenonTime lt now() and resultTime lt maxdatetime()", [20.0, 21.0, 22.0]),
    ("round(result div 4) eq 5 and floor(result div 4) eq 5 and ceiling(result div 4) eq 6", [21.0]),
    ("Datastream/Thing/name eq 'air-1'", [20.0, 21.0, 22.0]),
    ("result eq null", []),
])
def test_filter_operators_and_functions_on_observations(sta, sta_lab: StaLab, expression, expected):
    body = get(sta, f"/Datastreams({sta_lab.series['air-1/no2']})/Observations",
               **{"$filter": expression, "$orderby": "result"})
    assert [o["result"] for o in body["value"]] == expected


@pytest.mark.parametrize(("expression", "expected"), [
    ("substringof('oise', name)", ["noise-2"]),
    ("contains(name, 'oise')", ["noise-2"]),
    ("startswith(name, 'air') or endswith(name, '-3')", ["air-1", "gw-3"]),
    ("length(name) eq 5", ["air-1"]),
    ("indexof(name, '-') eq 5", ["noise-2", "other-1"]),
    ("substring(name, 1) eq 'ir-1' or substring(name, 0, 2) eq 'gw'", ["air-1", "gw-3"]),
    ("tolower(toupper(name)) eq 'other-1' and trim(concat(' ', name)) eq 'other-1'", ["other-1"]),
    ("properties/organisation eq 'other'", ["other-1"]),
    ("Datastreams/unitOfMeasurement/symbol eq 'dB'", ["noise-2"]),
    ("Datastreams/Observations/result gt 80", ["gw-3"]),
    ("Locations/location eq null", []),
])
def test_filter_string_functions_and_paths_on_things(sta, expression, expected):
    assert names(get(sta, "/Things", **{"$filter": expression, "$orderby": "name"})) == expected


@pytest.mark.parametrize(("expression", "expected"), [
    (f"geo.intersects(location, geography'{STAVANGER}')", ["air-1", "noise-2"]),
    (f"st_within(location, geography'{STAVANGER}')", ["air-1", "noise-2"]),
    (f"st_contains(geography'{STAVANGER}', location)", ["air-1", "noise-2"]),
    (f"st_disjoint(location, geography'{STAVANGER}')", ["other-1"]),
    ("st_equals(location, geography'POINT (5.7 58.95)')", ["noise-2"]),
    ("st_touches(location, geography'POLYGON ((5.7 58.9, 5.8 58.9, 5.8 58.95, 5.7 58.95, 5.7 58.9))')", ["noise-2"]),
    ("st_touches(location, geography'LINESTRING (5.7 58.95, 6 58.95)')", ["noise-2"]),
    ("st_intersects(location, geography'LINESTRING (5.6 58.95, 6 58.95)')", ["noise-2"]),
    ("st_crosses(location, geography'LINESTRING (5.6 58.95, 6 58.95)')", []),
    ("st_overlaps(location, geography'LINESTRING (5.6 58.95, 6 58.95)')", []),
    ("geo.distance(location, geography'POINT (5.7 58.95)') lt 0.05", ["air-1", "noise-2"]),
    ("geo.distance(location, geography'POINT (5.7 58.95)') eq 0", ["noise-2"]),
    ("geo.length(geography'LINESTRING (0 0, 3 4)') eq 5 and geo.length(location) eq 0", ["air-1", "noise-2", "other-1"]),
    (f"st_relate(location, geography'{STAVANGER}', 'T********')", ["air-1", "noise-2"]),
    (f"st_relate(location, geography'{STAVANGER}', 'FF*******')", ["other-1"]),
])
def test_filter_geospatial_functions_on_locations(sta, expression, expected):
    assert names(get(sta, "/Locations", **{"$filter": expression, "$orderby": "name"})) == expected


def test_geometry_literals_and_iot_id_in_filters(sta, sta_lab: StaLab):
    body = get(sta, "/Locations", **{"$filter": f"st_within(location, geometry'{STAVANGER}') and name ne 'geometry'",
                                     "$orderby": "name"})
    assert names(body) == ["air-1", "noise-2"]
    series = sta_lab.series["air-1/no2"]
    body = get(sta, "/Observations", **{"$filter": f"Datastream/@iot.id eq {series} and @iot.id ne 'x'"})
    assert [o["result"] for o in body["value"]] == [20.0, 21.0, 22.0]
    assert names(get(sta, "/Things", **{"$filter": "name eq '@iot.id'"})) == []


def test_geospatial_filter_through_navigation(sta):
    body = get(sta, "/Observations", **{
        "$filter": f"st_within(FeatureOfInterest/feature, geography'{STAVANGER}') and Datastream/name eq 'noise-2/noise'"})
    assert [o["result"] for o in body["value"]] == [50.0, 51.0, 52.0, 53.0, 54.0]
    things = get(sta, "/Things", **{"$filter": f"geo.intersects(Locations/location, geography'{STAVANGER}')",
                                    "$orderby": "name"})
    assert names(things) == ["air-1", "noise-2"]


def test_precedence_of_logical_operators(sta):
    body = get(sta, "/Things", **{"$filter": "name eq 'gw-3' or name eq 'air-1' and name eq 'noise-2'"})
    assert names(body) == ["gw-3"]


@pytest.mark.parametrize("params", [
    {"$filter": "name eq"}, {"$filter": "nosuch eq 1"}, {"$filter": "nosuchfunction(name)"},
    {"$top": "-1"}, {"$skip": "x"}, {"$count": "maybe"}, {"$orderby": "name sideways"},
    {"$select": "nosuch"}, {"$expand": "NoSuchLink"}, {"$expand": "Datastreams($top=x)"},
    {"$filter": "name"}, {"$filter": "geo.distance(name, geography'POINT (1 2)') lt 1"},
])
def test_malformed_options_are_400(sta, params):
    assert get(sta, "/Things", 400, **params)["status"] == 400


@pytest.mark.parametrize("params", [
    {"$apply": "groupby(name)"}, {"$search": "air"}, {"$resultFormat": "csv"},
    {"$filter": "Datastreams/any(d: d/name eq 'x')"},
    {"$filter": "st_within(location, geography'MULTIPOINT ((1 2))')"},
])
def test_unsupported_options_are_501(sta, params):
    path = "/Locations" if "location" in params.get("$filter", "") else "/Things"
    assert get(sta, path, 501, **params)["status"] == 501


def test_data_array_result_format(sta, sta_lab: StaLab):
    body = get(sta, "/Observations", **{"$resultFormat": "dataArray", "$filter": "Datastream/name eq 'air-1/no2'",
                                        "$select": "phenomenonTime,result", "$orderby": "phenomenonTime"})
    [group] = body["value"]
    assert group["Datastream@iot.navigationLink"].endswith(f"/Datastreams({sta_lab.series['air-1/no2']})")
    assert group["components"] == ["phenomenonTime", "result"]
    assert group["dataArray@iot.count"] == 3
    assert group["dataArray"][0] == ["2025-03-01T12:00:00.000000Z", 20.0]


def test_properties_citylab_never_holds_are_shown_only_when_selected(sta, sta_lab: StaLab):
    path = f"/Datastreams({sta_lab.series['air-1/no2']})/Observations"
    [first] = get(sta, path, **{"$top": "1"})["value"]
    assert {"phenomenonTime", "resultTime", "result"} <= set(first)
    assert not {"resultQuality", "validTime", "parameters"} & set(first)
    [chosen] = get(sta, path, **{"$top": "1", "$select": "validTime,result"})["value"]
    assert chosen == {"validTime": None, "result": 20.0}
    [expanded] = get(sta, f"/Datastreams({sta_lab.series['air-1/no2']})",
                     **{"$expand": "Observations($top=1)"})["Observations"]
    assert set(expanded) == set(first)
