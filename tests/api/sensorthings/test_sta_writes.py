"""Observations written through the SensorThings face land through the ingest pipeline."""

from __future__ import annotations


import psycopg
import pytest
from lab_probes import wait
from sta_lab import ROOT, StaLab, client_of


@pytest.fixture
def lab_client(fresh_lab: StaLab):
    with client_of(fresh_lab, fresh_lab.lab.headers) as client:
        yield client


def _counters(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT name, value FROM ingest_counters").fetchall())


def test_post_observation_is_stored_once_and_readable(fresh_lab: StaLab, lab_client):
    series = fresh_lab.series["air-1/no2"]
    before = _counters(fresh_lab.url)
    body = {"result": 42.5, "phenomenonTime": "2025-03-02T10:00:00.123456Z"}
    response = lab_client.post(f"{ROOT}/Datastreams({series})/Observations", json=body)
    assert response.status_code == 201, response.text
    location = response.headers["Location"]
    assert location.endswith(f"/Observations('{series}-1740909600123456')")
    assert response.json()["@iot.selfLink"] == location and response.json()["result"] == 42.5
    stored = lab_client.get(location).json()
    assert stored["result"] == 42.5 and stored["phenomenonTime"] == "2025-03-02T10:00:00.123456Z"
    again = lab_client.post(f"{ROOT}/Observations", json={**body, "Datastream": {"@iot.id": series}})
    assert again.status_code == 201 and again.headers["Location"] == location
    after = _counters(fresh_lab.url)
    assert after["packs_stored"] - before["packs_stored"] == 1
    assert after["packs_duplicate"] - before["packs_duplicate"] == 1
    assert after["readings_stored"] - before["readings_stored"] == 1
    values = lab_client.get(f"{ROOT}/Datastreams({series})/Observations",
                            params={"$filter": "result eq 42.5"}).json()["value"]
    assert len(values) == 1


@pytest.mark.parametrize("body", [
    {"result": "high", "phenomenonTime": "2025-03-02T10:00:00Z"},
    {"result": 1.0, "phenomenonTime": "2025-03-02T10:00:00"},
    {"result": 1.0, "phenomenonTime": "yesterday"},
    {"result": 1.0},
])
def test_bad_observations_are_refused_with_a_reason(fresh_lab: StaLab, lab_client, body):
    path = "/Observations" if "Datastream" not in body and body.get("phenomenonTime") is None else \
        f"/Datastreams({fresh_lab.series['air-1/no2']})/Observations"
    response = lab_client.post(ROOT + path, json=body)
    assert response.status_code == 400
    assert response.json()["detail"]


def test_disabled_device_goes_to_dead_letters(fresh_lab: StaLab, lab_client):
    with psycopg.connect(fresh_lab.url, autocommit=True) as conn:
        conn.execute("UPDATE devices SET enabled = false WHERE device = 'noise-2'")
    response = lab_client.post(f"{ROOT}/Datastreams({fresh_lab.series['noise-2/noise']})/Observations",
                               json={"result": 60.0, "phenomenonTime": "2025-03-02T10:00:00Z"})
    assert response.status_code == 422
    with psycopg.connect(fresh_lab.url) as conn:
        [(reason, device)] = conn.execute("SELECT reason, device FROM dead_letters").fetchall()
    assert device == "noise-2" and reason


def test_create_observations_answers_a_link_or_error_per_row(fresh_lab: StaLab, lab_client):
    series = fresh_lab.series["air-1/temperature"]
    body = [{"Datastream": {"@iot.id": series}, "components": ["phenomenonTime", "result"],
             "dataArray": [["2025-03-02T10:00:00Z", 5.5], ["2025-03-02T10:01:00Z", "warm"],
                           ["2025-03-02T10:02:00Z", 6.5]]}]
    response = lab_client.post(f"{ROOT}/CreateObservations", json=body)
    assert response.status_code == 201, response.text
    links = response.json()
    assert links[1] == "error"
    assert links[0].endswith(f"/Observations('{series}-1740909600000000')")
    assert lab_client.get(links[2]).json()["result"] == 6.5


def test_the_write_pipeline_closes_with_the_app(fresh_lab: StaLab):
    def ingest_connections() -> int:
        with psycopg.connect(fresh_lab.url) as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                " AND application_name LIKE 'citylab-ingest%%'").fetchone()[0]

    with client_of(fresh_lab, fresh_lab.lab.headers) as client:
        response = client.post(f"{ROOT}/Datastreams({fresh_lab.series['air-1/no2']})/Observations",
                               json={"result": 1.0, "phenomenonTime": "2025-03-02T10:00:00Z"})
        assert response.status_code == 201
        assert ingest_connections() == 2
    # a closed connection's backend leaves pg_stat_activity soon after
    wait(lambda: ingest_connections() == 0, 10, "the face's ingest connections to close")
