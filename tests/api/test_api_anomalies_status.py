"""GET /v1/anomalies and /v1/status against a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from seeded_lab import T0, Lab

PROBLEM = "application/problem+json"
RANGE = {"start": "2025-03-01T12:00:00Z", "end": "2025-03-01T13:00:00Z"}


def test_anomalies_of_all_series_half_open(client: TestClient, lab: Lab) -> None:
    response = client.get("/v1/anomalies", params=RANGE)
    assert response.status_code == 200
    body = response.json()
    # the spike at exactly 13:00 is outside [12:00, 13:00)
    assert body["data"] == [
        {"time": "2025-03-01T12:10:00Z", "series_id": lab.pm25, "device": "air-042", "quantity": "pm2_5",
         "value": 99.0, "score": 7.5, "kind": "spike"},
        {"time": "2025-03-01T12:20:00Z", "series_id": lab.no2, "device": "air-042", "quantity": "no2",
         "value": 0.0, "score": 3.25, "kind": "stuck"},
    ]
    assert body["count"] == 2 and body["truncated"] is False


def test_anomalies_of_one_series_and_limit(client: TestClient, lab: Lab) -> None:
    params = {"start": "2025-03-01T12:00:00Z", "end": "2025-03-01T14:00:00Z", "series_id": lab.pm25}
    body = client.get("/v1/anomalies", params=params).json()
    assert [a["time"] for a in body["data"]] == ["2025-03-01T12:10:00Z", "2025-03-01T13:00:00Z"]
    body = client.get("/v1/anomalies", params={**params, "limit": 1}).json()
    assert body["count"] == 1 and body["truncated"] is True


def test_anomalies_bad_input(client: TestClient, lab: Lab) -> None:
    for params, status in (
        ({**RANGE, "series_id": 999}, 404),
        ({**RANGE, "series_id": "x"}, 422),
        ({"start": "2025-03-01T12:00:00"}, 422),
        ({"start": RANGE["end"], "end": RANGE["start"]}, 422),
        ({"limit": 0}, 422),
    ):
        response = client.get("/v1/anomalies", params=params)
        assert response.status_code == status, (params, response.text)
        assert response.headers["content-type"] == PROBLEM


def test_status(client: TestClient, lab: Lab) -> None:
    before = datetime.now(UTC)
    body = client.get("/v1/status").json()
    newest = max(lab.times)  # pm2_5 runs three hours, the other series less
    assert newest > T0 + timedelta(hours=1)
    assert {k: v for k, v in body.items() if k != "lag_seconds"} == {
        "scope": "organisation",
        "org": "lab",
        "packs_received": 12,
        "packs_stored": 10,
        "packs_dead_lettered": 2,
        "packs_duplicate": 3,
        "readings_stored": len(lab.times) + 4,
        "dead_letters": 2,
        "devices": 2,
        "series": 3,
        "newest_reading": newest.isoformat().replace("+00:00", "Z"),
    }
    lag = (before - newest).total_seconds()
    assert lag <= body["lag_seconds"] < lag + 60


def test_status_of_an_empty_lab(empty_client: TestClient) -> None:
    body = empty_client.get("/v1/status").json()
    assert body["newest_reading"] is None and body["lag_seconds"] is None
    assert body["packs_received"] == 0 and body["series"] == 0
    assert empty_client.get("/v1/series").json() == []
