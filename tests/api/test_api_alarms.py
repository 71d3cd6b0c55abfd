"""/v1/alarms against a real database: rules on your own series, alarms listed and filtered,
acknowledged with a comment, other organisations kept out."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from seeded_lab import Lab
from testbed import make_tenant

from api import create_app
from citylab.settings import Settings
from storage.alarms import Episode, apply_episodes

T0_US = 1_764_580_000 * 1_000_000


@pytest.fixture
def other(lab: Lab) -> Iterator[TestClient]:
    tenant = make_tenant(lab.url, name="Other", kind="city", slug="other")
    with TestClient(create_app(Settings(database_url=lab.url)), headers=tenant.headers) as client:
        yield client


def test_rules_alarms_and_acknowledgement(client: TestClient, other: TestClient, lab: Lab) -> None:
    body = {"name": "pm25-class", "series_id": lab.pm25, "on": 25.0, "off": 20.0, "hold_s": 900}
    created = client.post("/v1/alarms/rules", json=body)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert (rule["series_id"], rule["on_value"], rule["off_value"], rule["hold_s"], rule["above"]) == (
        lab.pm25, 25.0, 20.0, 900.0, True)
    assert client.post("/v1/alarms/rules", json=body).status_code == 409  # the name is taken
    assert other.post("/v1/alarms/rules", json={**body, "name": "x"}).status_code == 404  # not their series
    assert client.post("/v1/alarms/rules", json={**body, "name": "y", "off": 30.0}).status_code == 422
    assert [r["name"] for r in client.get("/v1/alarms/rules").json()] == ["pm25-class"]
    assert other.get("/v1/alarms/rules").json() == []

    with psycopg.connect(lab.url) as conn:  # two episodes, as ingest records them
        apply_episodes(conn, [Episode(rule["id"], T0_US, 31.0, True), Episode(rule["id"], T0_US + 60e6, 18.0, False),
                              Episode(rule["id"], T0_US + 120e6, 33.0, True)])
    alarms = client.get("/v1/alarms").json()
    assert [(a["state"], a["open_value"]) for a in alarms] == [("open", 33.0), ("cleared", 31.0)]
    assert [a["state"] for a in client.get("/v1/alarms", params={"state": "cleared"}).json()] == ["cleared"]
    assert client.get("/v1/alarms", params={"state": "sleeping"}).status_code == 422
    assert client.get("/v1/alarms", params={"start": "2030-01-01T00:00:00Z"}).json() == []
    assert other.get("/v1/alarms").json() == []

    open_id = alarms[0]["id"]
    assert other.post(f"/v1/alarms/{open_id}/ack", json={"comment": "mine?"}).status_code == 404
    acked = client.post(f"/v1/alarms/{open_id}/ack", json={"comment": "crew sent"})
    assert acked.status_code == 200 and acked.json()["state"] == "acknowledged"
    assert acked.json()["ack_comment"] == "crew sent" and acked.json()["acked_by"].startswith("lab/key-")
    assert client.post(f"/v1/alarms/{open_id}/ack", json={"comment": "again"}).status_code == 404
    assert client.post(f"/v1/alarms/{alarms[1]['id']}/ack", json={"comment": "late"}).status_code == 404
    assert client.post(f"/v1/alarms/{open_id}/ack", json={"comment": ""}).status_code == 422


def test_channels(client: TestClient, other: TestClient) -> None:
    hook = {"kind": "webhook", "target": "https://hooks.city.example/alarms", "secret": "0123456789abcdef"}
    created = client.post("/v1/alarms/channels", json=hook)
    assert created.status_code == 201 and "secret" not in created.json()
    assert client.post("/v1/alarms/channels", json={**hook, "target": "ftp://x/"}).status_code == 422
    assert client.post("/v1/alarms/channels", json={**hook, "secret": None}).status_code == 422
    mail = {"kind": "smtp", "target": "duty@city.example", "smtp_host": "mail.city.example", "smtp_port": 25}
    assert client.post("/v1/alarms/channels", json=mail).status_code == 201
    assert client.post("/v1/alarms/channels", json={**mail, "smtp_port": None}).status_code == 422
    mqtt = client.post("/v1/alarms/channels", json={"kind": "mqtt", "target": "lab/other/alarms"})
    assert mqtt.status_code == 201 and mqtt.json()["target"] == "lab/lab/alarms"  # only its own topic
    assert [c["kind"] for c in client.get("/v1/alarms/channels").json()] == ["webhook", "smtp", "mqtt"]
    assert other.get("/v1/alarms/channels").json() == []
