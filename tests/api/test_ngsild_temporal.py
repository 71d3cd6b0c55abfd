"""NGSI-LD temporal API over our readings: timerel, lastN, representations,
aggregation from stored aggregates and from raw readings, 206 paging."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from ngsild_lab import ERR, T0, NgsiLab, link, seed
from testbed import make_tenant

from api import create_app
from citylab.settings import Settings

BASE = "/ngsi-ld/v1/temporal/entities"
AIR1 = "urn:ngsi-ld:AirQualityObserved:lab:air-1"
AIR2 = "urn:ngsi-ld:AirQualityObserved:lab:air-2"


def iso(t) -> str:
    return t.isoformat().replace("+00:00", "Z")


@pytest.fixture
def ngsi_lab(database: str) -> NgsiLab:
    return seed(database)


@pytest.fixture
def client(ngsi_lab: NgsiLab) -> Iterator[TestClient]:
    tenant = make_tenant(ngsi_lab.url, name="Lab", kind="provider", slug="lab")
    with TestClient(create_app(Settings(database_url=ngsi_lab.url)), headers=tenant.headers) as client:
        yield client


def test_normalized_history_with_timerel(client: TestClient) -> None:
    r = client.get(f"{BASE}/{AIR1}", headers=link("Environment"), params={"attrs": "pm25"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == AIR1 and body["type"] == "AirQualityObserved"
    assert [i["value"] for i in body["pm25"]] == [10.0, 12.5, 14.0]
    assert body["pm25"][0] == {"type": "Property", "value": 10.0, "observedAt": "2025-03-01T12:00:00.000000Z",
                               "unitCode": "GQ"}
    assert set(body) == {"id", "type", "pm25"}

    def values(**params) -> list[float]:
        r = client.get(f"{BASE}/{AIR1}", headers=link("Environment"), params={"attrs": "pm25", **params})
        assert r.status_code == 200, r.text
        return [i["value"] for i in r.json().get("pm25", [])]

    assert values(timerel="before", timeAt=iso(T0 + timedelta(minutes=1))) == [10.0]
    assert values(timerel="after", timeAt=iso(T0 + timedelta(minutes=1))) == [14.0]
    assert values(timerel="between", timeAt=iso(T0), endTimeAt=iso(T0 + timedelta(minutes=2))) == [10.0, 12.5]
    assert values(lastN=2) == [12.5, 14.0]
    assert values(timerel="after", timeAt=iso(T0 + timedelta(hours=1))) == []


def test_temporal_values_and_conversion(client: TestClient) -> None:
    r = client.get(f"{BASE}/{AIR1}", headers=link("Environment"),
                   params={"options": "temporalValues", "attrs": "temperature,relativeHumidity"})
    body = r.json()
    assert body["temperature"]["type"] == "Property"
    assert [v for v, _ in body["temperature"]["values"]] == pytest.approx([7.0, 8.0, 9.0])   # K -> Cel
    assert [v for v, _ in body["relativeHumidity"]["values"]] == pytest.approx([0.5, 0.55, 0.6])
    assert body["temperature"]["values"][0][1] == "2025-03-01T12:00:00.000000Z"


def test_aggregation_from_raw_readings(client: TestClient) -> None:
    r = client.get(f"{BASE}/{AIR1}", headers=link("Environment"), params={
        "options": "aggregatedValues", "aggrMethods": "totalCount,sum,avg,min,max,stddev,sumsq,distinctCount",
        "aggrPeriodDuration": "PT0S", "attrs": "pm25", "timerel": "between", "timeAt": iso(T0),
        "endTimeAt": iso(T0 + timedelta(minutes=3))})
    assert r.status_code == 200, r.text
    pm25 = r.json()["pm25"]
    assert pm25["totalCount"] == [[3, "2025-03-01T12:00:00.000000Z", "2025-03-01T12:03:00.000000Z"]]
    assert pm25["sum"][0][0] == pytest.approx(36.5)
    assert pm25["avg"][0][0] == pytest.approx(36.5 / 3)
    assert pm25["min"][0][0] == 10.0 and pm25["max"][0][0] == 14.0
    assert pm25["sumsq"][0][0] == pytest.approx(100 + 156.25 + 196)
    assert pm25["stddev"][0][0] == pytest.approx(2.0207259, rel=1e-6)   # sample standard deviation
    assert pm25["distinctCount"][0][0] == 3


def test_aggregation_answered_from_stored_aggregates_where_a_window_fits(client: TestClient, ngsi_lab: NgsiLab
                                                                         ) -> None:
    # stored 60 s aggregates that differ from the raw rows, so the answer shows where it came from
    series = ngsi_lab.series[("air-2", "pm2_5")]
    with psycopg.connect(ngsi_lab.url, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO aggregates (width_s, series_id, bucket, count, sum, min, max, last, last_time, m2)"
            " VALUES (60, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(series, T0, 4, 100.0, 20.0, 30.0, 30.0, T0 + timedelta(seconds=50), 50.0),
             (series, T0 + timedelta(minutes=1), 6, 300.0, 40.0, 60.0, 45.0, T0 + timedelta(seconds=110), 150.0)])
    params = {"options": "aggregatedValues", "aggrMethods": "totalCount,avg,max", "attrs": "pm25",
              "timerel": "between", "timeAt": iso(T0), "endTimeAt": iso(T0 + timedelta(minutes=2))}
    stored = client.get(f"{BASE}/{AIR2}", headers=link("Environment"),
                        params={**params, "aggrPeriodDuration": "PT2M"}).json()["pm25"]
    assert stored["totalCount"] == [[10, "2025-03-01T12:00:00.000000Z", "2025-03-01T12:02:00.000000Z"]]
    assert stored["avg"][0][0] == pytest.approx(40.0) and stored["max"][0][0] == 60.0
    raw = client.get(f"{BASE}/{AIR2}", headers=link("Environment"),
                     params={**params, "aggrPeriodDuration": "PT30S"}).json()["pm25"]
    assert [c for c, _, _ in raw["totalCount"]] == [1, 1]      # the raw readings at T0 and T0 + 1 min
    assert raw["totalCount"][1][1:] == ["2025-03-01T12:01:00.000000Z", "2025-03-01T12:01:30.000000Z"]


def test_query_temporal_entities_and_errors(client: TestClient) -> None:
    r = client.get(BASE, headers=link("Environment"), params={
        "type": "AirQualityObserved", "attrs": "pm25", "lastN": 1, "count": "true"})
    assert r.status_code == 200, r.text
    assert r.headers["NGSILD-Results-Count"] == "2"
    assert [(e["id"], [i["value"] for i in e["pm25"]]) for e in r.json()] == [(AIR1, [14.0]), (AIR2, [40.0])]
    bad = [
        {"timerel": "between", "timeAt": iso(T0)},
        {"timerel": "during", "timeAt": iso(T0)},
        {"timerel": "after", "timeAt": "yesterday"},
        {"timerel": "after", "timeAt": "2025-03-01T12:00:00"},
        {"options": "aggregatedValues"},
        {"options": "aggregatedValues", "aggrMethods": "median"},
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "P1M"},
        {"lastN": 0},
    ]
    for params in bad:
        r = client.get(f"{BASE}/{AIR1}", params=params)
        assert r.status_code == 400 and r.json()["type"] == ERR + "BadRequestData", (params, r.text)
    r = client.get(f"{BASE}/urn:ngsi-ld:AirQualityObserved:other:air-9")
    assert r.status_code == 404 and r.json()["type"] == ERR + "ResourceNotFound"


@pytest.mark.slow
def test_a_week_of_minutes_is_paged_with_206(client: TestClient, ngsi_lab: NgsiLab) -> None:
    series = ngsi_lab.series[("air-2", "pm2_5")]
    with psycopg.connect(ngsi_lab.url, autocommit=True) as conn:
        conn.execute("DELETE FROM readings WHERE series_id = %s", (series,))
        conn.execute(
            "INSERT INTO readings (time, series_id, value)"
            " SELECT %s::timestamptz + i * interval '1 minute', %s, i FROM generate_series(0, 10079) i",
            (T0, series))
    r = client.get(f"{BASE}/{AIR2}", headers=link("Environment"), params={"attrs": "pm25"})
    assert r.status_code == 206
    instances = r.json()["pm25"]
    assert len(instances) == 10_000 and instances[0]["value"] == 0.0
    assert r.headers["Content-Range"] == (
        f"date-time {iso(T0)[:-1]}.000000Z-{iso(T0 + timedelta(minutes=9999))[:-1]}.000000Z/*")
    # the next page starts after the last instance served
    rest = client.get(f"{BASE}/{AIR2}", headers=link("Environment"), params={
        "attrs": "pm25", "timerel": "after", "timeAt": iso(T0 + timedelta(minutes=9999))})
    assert rest.status_code == 200 and len(rest.json()["pm25"]) == 80
