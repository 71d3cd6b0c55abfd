"""GET /v1/series, readings and aggregates against a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient

from seeded_lab import T0, Lab

PROBLEM = "application/problem+json"


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_list_series(client: TestClient, lab: Lab) -> None:
    response = client.get("/v1/series")
    assert response.status_code == 200
    keys = ("id", "device", "quantity", "unit")
    assert [{k: s[k] for k in keys} for s in response.json()] == [
        {"id": lab.pm25, "device": "air-042", "quantity": "pm2_5", "unit": "ug/m3"},
        {"id": lab.no2, "device": "air-042", "quantity": "no2", "unit": "ug/m3"},
        {"id": lab.noise, "device": "noise-7", "quantity": "laeq", "unit": None},
    ]


def test_readings_are_exact_and_half_open(client: TestClient, lab: Lab) -> None:
    response = client.get(
        f"/v1/series/{lab.no2}/readings", params={"start": iso(T0), "end": iso(T0 + timedelta(hours=1))}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["series"]["quantity"] == "no2"
    assert body["start"] == "2025-03-01T12:00:00Z" and body["end"] == "2025-03-01T13:00:00Z"
    # start is included, end (the 3.5 at exactly T0 + 1 h) is not
    assert body["data"] == [
        {"time": "2025-03-01T12:00:00Z", "value": 1.5},
        {"time": "2025-03-01T12:00:00.123456Z", "value": 2.5},
    ]
    assert body["count"] == 2 and body["truncated"] is False


def test_readings_match_the_rows_in_range(client: TestClient, lab: Lab) -> None:
    start, end = T0 + timedelta(minutes=7), T0 + timedelta(minutes=50)
    response = client.get(f"/v1/series/{lab.pm25}/readings", params={"start": iso(start), "end": iso(end)})
    body = response.json()
    mask = np.array([start <= t < end for t in lab.times])
    assert [datetime.fromisoformat(r["time"]) for r in body["data"]] == list(lab.times[mask])
    assert [r["value"] for r in body["data"]] == lab.values[mask].tolist()


def test_readings_limit_truncates_oldest_first(client: TestClient, lab: Lab) -> None:
    body = client.get(
        f"/v1/series/{lab.pm25}/readings", params={"start": iso(T0), "end": iso(T0 + timedelta(hours=3)), "limit": 5}
    ).json()
    assert body["count"] == 5 and body["truncated"] is True
    assert [datetime.fromisoformat(r["time"]) for r in body["data"]] == list(lab.times[:5])


def test_offsets_are_converted_to_utc(client: TestClient, lab: Lab) -> None:
    # 13:00+01:00 is 12:00Z; an unencoded "+" arrives as a space and is read back as "+".
    for raw in ("2025-03-01T13:00:00%2B01:00", "2025-03-01T13:00:00+01:00"):
        body = client.get(f"/v1/series/{lab.no2}/readings?start={raw}&end=2025-03-01T12:00:01Z").json()
        assert body["start"] == "2025-03-01T12:00:00Z"
        assert [r["value"] for r in body["data"]] == [1.5, 2.5]


def test_default_range_is_the_last_hour(client: TestClient, lab: Lab) -> None:
    body = client.get(f"/v1/series/{lab.pm25}/readings").json()
    start, end = datetime.fromisoformat(body["start"]), datetime.fromisoformat(body["end"])
    assert end - start == timedelta(hours=1)
    assert abs((datetime.now(UTC) - end).total_seconds()) < 60
    assert body["data"] == []


def test_non_finite_values_are_null(client: TestClient, lab: Lab) -> None:
    body = client.get(f"/v1/series/{lab.noise}/readings", params={"start": iso(T0), "end": iso(T0 + timedelta(hours=1))})
    assert body.status_code == 200
    assert body.json()["data"] == [{"time": "2025-03-01T12:05:00Z", "value": None}]


def _expected_buckets(lab: Lab, start: datetime, end: datetime, bucket_s: int) -> list[dict]:
    """NumPy over the raw rows whose minute starts in [start, end), in epoch-aligned buckets."""
    epoch_s = np.array([t.timestamp() for t in lab.times])
    minute = np.floor(epoch_s / 60) * 60
    keep = (minute >= start.timestamp()) & (minute < end.timestamp())
    keys = (np.floor(epoch_s[keep] / bucket_s) * bucket_s).astype(np.int64)
    values = lab.values[keep]
    out = []
    for key in np.unique(keys):
        v = values[keys == key]
        out.append({
            "bucket": iso(datetime.fromtimestamp(int(key), UTC)), "count": len(v), "mean": v.mean(),
            "min": v.min(), "max": v.max(), "last": v[-1], "std": v.std(),
        })
    return out


def _assert_buckets(actual: list[dict], expected: list[dict]) -> None:
    assert [a["bucket"] for a in actual] == [e["bucket"] for e in expected]
    for a, e in zip(actual, expected):
        assert a["count"] == e["count"]
        assert a["min"] == e["min"] and a["max"] == e["max"] and a["last"] == e["last"]
        assert a["mean"] == pytest.approx(e["mean"], rel=1e-12)
        assert a["std"] == pytest.approx(e["std"], rel=1e-9)


@pytest.mark.parametrize(("bucket", "bucket_s"), [("PT1M", 60), ("PT15M", 900), ("PT1H", 3600), ("600", 600)])
def test_aggregates_rebucket_like_numpy(client: TestClient, lab: Lab, bucket: str, bucket_s: int) -> None:
    start, end = T0, T0 + timedelta(hours=3)
    response = client.get(
        f"/v1/series/{lab.pm25}/aggregates", params={"start": iso(start), "end": iso(end), "bucket": bucket}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["bucket_s"] == bucket_s
    expected = _expected_buckets(lab, start, end, bucket_s)
    assert len(body["data"]) == 3 * 3600 // bucket_s
    _assert_buckets(body["data"], expected)


def test_aggregates_range_is_half_open_on_stored_buckets(client: TestClient, lab: Lab) -> None:
    # Not aligned to the 15-min grid: the first bucket holds minutes 12:07..12:14 only,
    # and the minute starting at `end` (12:52) is left out.
    start, end = T0 + timedelta(minutes=7), T0 + timedelta(minutes=52)
    body = client.get(
        f"/v1/series/{lab.pm25}/aggregates", params={"start": iso(start), "end": iso(end), "bucket": "PT15M"}
    ).json()
    expected = _expected_buckets(lab, start, end, 900)
    assert body["data"][0]["bucket"] == "2025-03-01T12:00:00Z"
    assert body["data"][-1]["bucket"] == "2025-03-01T12:45:00Z"
    _assert_buckets(body["data"], expected)


def test_aggregates_of_a_series_without_any(client: TestClient, lab: Lab) -> None:
    body = client.get(f"/v1/series/{lab.no2}/aggregates", params={"start": iso(T0), "bucket": "PT1H"}).json()
    assert body["data"] == []


@pytest.mark.parametrize(
    ("path", "params", "status", "words"),
    [
        ("/v1/series/{pm25}/readings", {"start": "2025-03-01T12:00:00"}, 422, "timezone"),
        ("/v1/series/{pm25}/readings", {"end": "2025-03-01T12:00:00"}, 422, "timezone"),
        ("/v1/series/{pm25}/readings", {"start": "yesterday"}, 422, "start"),
        ("/v1/series/{pm25}/readings", {"start": "2025-03-01T13:00:00Z", "end": "2025-03-01T12:00:00Z"}, 422,
         "later than start"),
        ("/v1/series/{pm25}/readings", {"start": "2025-03-01T12:00:00Z", "end": "2025-03-01T12:00:00Z"}, 422,
         "later than start"),
        ("/v1/series/{pm25}/readings", {"end": "0001-01-01T00:30:00Z"}, 422, "range"),
        ("/v1/series/{pm25}/readings", {"limit": "0"}, 422, "limit"),
        ("/v1/series/{pm25}/readings", {"limit": "100001"}, 422, "limit"),
        ("/v1/series/{pm25}/readings", {"limit": "many"}, 422, "limit"),
        ("/v1/series/999/readings", {}, 404, "no series with id 999"),
        ("/v1/series/0/readings", {}, 422, "series_id"),
        ("/v1/series/99999999999/readings", {}, 422, "series_id"),
        ("/v1/series/abc/readings", {}, 422, "series_id"),
        ("/v1/series/1.5/aggregates", {}, 422, "series_id"),
        ("/v1/series/999/aggregates", {}, 404, "no series with id 999"),
        ("/v1/series/{pm25}/aggregates", {"bucket": "PT90S"}, 422, "multiple of 60"),
        ("/v1/series/{pm25}/aggregates", {"bucket": "30"}, 422, "multiple of 60"),
        ("/v1/series/{pm25}/aggregates", {"bucket": "0"}, 422, "positive"),
        ("/v1/series/{pm25}/aggregates", {"bucket": "-60"}, 422, "ISO 8601"),
        ("/v1/series/{pm25}/aggregates", {"bucket": "P1M"}, 422, "ISO 8601"),  # months vary in length
        ("/v1/series/{pm25}/aggregates", {"bucket": "PT"}, 422, "ISO 8601"),
        ("/v1/series/{pm25}/aggregates", {"bucket": "15 minutes"}, 422, "ISO 8601"),
        ("/v1/series/{pm25}/aggregates", {"bucket": "P99999999999D"}, 422, "longer than"),
        ("/v1/series/{pm25}/aggregates", {"bucket": "PT1M", "start": "2000-01-01T00:00:00Z"}, 422, "buckets"),
        ("/v1/series/{pm25}/aggregates", {"start": "2025-03-01T12:00"}, 422, "timezone"),
    ],
)
def test_bad_input_is_a_problem_not_a_500(
    client: TestClient, lab: Lab, path: str, params: dict, status: int, words: str
) -> None:
    response = client.get(path.format(pm25=lab.pm25), params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == "about:blank" and body["status"] == status and body["title"]
    assert words in body["detail"], body


def test_naive_time_names_the_parameter(client: TestClient, lab: Lab) -> None:
    body = client.get(f"/v1/series/{lab.pm25}/readings", params={"start": "2025-03-01T12:00:00"}).json()
    assert body["errors"] == [{"in": "query", "name": "start", "message": "Input should have timezone info"}]
