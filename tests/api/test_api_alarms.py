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


def test_rule_kinds_and_scopes_the_organisation_may_read(client: TestClient, other: TestClient, lab: Lab) -> None:
    with psycopg.connect(lab.url) as conn:
        conn.execute("INSERT INTO devices (device, org, kind) VALUES ('gw-9', 'lab', 'gateway')")
    made = {name: client.post("/v1/alarms/rules", json={"name": name, **body}) for name, body in {
        "pm-spikes": {"kind": "anomaly", "quantity": "pm2_5", "anomaly_kinds": ["spike"], "min_score": 0.8},
        "air-silent": {"kind": "silence", "device": "air-042", "intervals": 5},
        "gw-offline": {"kind": "device", "condition": "offline", "device": "gw-9", "hold_s": 120},
        "buffers": {"kind": "device", "condition": "buffer", "on": 500, "off": 50, "hold_s": 60},
        "no2-class": {"kind": "threshold", "quantity": "no2", "device": "air-042", "on": 200, "off": 150},
    }.items()}
    assert {k: r.status_code for k, r in made.items()} == dict.fromkeys(made, 201), {k: r.text for k, r in made.items()}
    spikes = made["pm-spikes"].json()
    assert (spikes["kind"], spikes["quantity"], spikes["anomaly_kinds"], spikes["min_score"], spikes["clear_s"]) == (
        "anomaly", "pm2_5", ["spike"], 0.8, 900.0)
    assert made["air-silent"].json()["device_org"] == "lab"
    refused = {
        "no scope": ({"kind": "threshold", "on": 25}, 422),
        "unknown quantity": ({"kind": "anomaly", "quantity": "pm3"}, 422),
        "silence without intervals": ({"kind": "silence", "device": "air-042"}, 422),
        "buffer without on": ({"kind": "device", "condition": "buffer"}, 422),
        "device rule on a series": ({"kind": "device", "condition": "offline", "series_id": lab.pm25}, 422),
        "no such device": ({"kind": "silence", "device": "ghost", "intervals": 3}, 404),
        "no such product": ({"kind": "anomaly", "product_id": 999}, 404),
    }
    for name, (body, status) in refused.items():
        assert client.post("/v1/alarms/rules", json={"name": name, **body}).status_code == status, name
    # another organisation may not watch what it may not read ...
    product = client.post("/v1/products", json={"title": "PM2.5", "licence": "CC-BY-4.0", "series_ids": [lab.pm25]})
    assert product.status_code == 201, product.text
    pid = product.json()["id"]
    for body in ({"series_id": lab.pm25}, {"device": "air-042", "device_org": "lab"}, {"product_id": pid}):
        assert other.post("/v1/alarms/rules", json={"name": "peek", "kind": "anomaly", **body}).status_code == 404
    # ... until it holds a grant: then the product's series, and only those
    grant = other.post(f"/v1/products/{pid}/requests", json={"message": "alerts"}).json()
    assert client.post(f"/v1/grants/{grant['id']}/approve", json={}).status_code == 200
    for name, body in (("granted-series", {"series_id": lab.pm25}), ("granted-product", {"product_id": pid}),
                       ("granted-device", {"device": "air-042", "device_org": "lab"})):
        r = other.post("/v1/alarms/rules", json={"name": name, "kind": "anomaly", **body})
        assert r.status_code == 201, r.text
    from storage.alarm_rules import rule_series

    def watched() -> dict[str, list[int]]:
        with psycopg.connect(lab.url) as conn:
            names = dict(conn.execute("SELECT id, name FROM alert_rules").fetchall())
            pairs = rule_series(conn)
        out: dict[str, list[int]] = {}
        for rule_id, series_id in pairs:
            out.setdefault(names[rule_id], []).append(series_id)
        return out

    scopes = watched()
    assert scopes["granted-device"] == [lab.pm25]  # air-042's no2 is not in the grant
    assert scopes["granted-product"] == [lab.pm25] and scopes["pm-spikes"] == [lab.pm25]
    assert scopes["air-silent"] == [lab.pm25, lab.no2] and scopes["no2-class"] == [lab.no2]
    assert client.post(f"/v1/grants/{grant['id']}/revoke").status_code == 200
    assert not {"granted-series", "granted-product", "granted-device"} & set(watched())


def test_alarms_filtered_and_exported(client: TestClient, lab: Lab) -> None:
    import io
    import json

    import pyarrow.parquet as pq

    from storage.alarm_conditions import apply_anomalies

    pm = client.post("/v1/alarms/rules", json={"name": "pm", "series_id": lab.pm25, "on": 25.0}).json()
    no2 = client.post("/v1/alarms/rules", json={"name": "no2-faults", "kind": "anomaly", "quantity": "no2",
                                                "severity": "critical"}).json()
    with psycopg.connect(lab.url) as conn:
        apply_episodes(conn, [Episode(pm["id"], T0_US, 31.0, True)])
        apply_anomalies(conn, rule_id=[no2["id"]], series_id=[lab.no2], first_us=[T0_US + 60e6], value=[0.0],
                        score=[0.9], kind=["stuck"], last_us=[T0_US + 120e6], peak=[0.95], hits=[2])
    everything = client.get("/v1/alarms").json()
    assert [(a["rule"], a["kind"], a["device"], a["quantity"]) for a in everything] == [
        ("no2-faults", "anomaly", "air-042", "no2"), ("pm", "threshold", "air-042", "pm2_5")]
    assert everything[0]["detail"] == {"kind": "stuck", "score": 0.9, "peak_score": 0.95}
    assert everything[0]["hits"] == 2
    for params, rules in (({"kind": "anomaly"}, ["no2-faults"]), ({"severity": "warning"}, ["pm"]),
                          ({"quantity": "pm2_5"}, ["pm"]), ({"series_id": lab.no2}, ["no2-faults"]),
                          ({"device": "air-042"}, ["no2-faults", "pm"]), ({"rule_id": pm["id"]}, ["pm"]),
                          ({"device": "noise-7"}, [])):
        assert [a["rule"] for a in client.get("/v1/alarms", params=params).json()] == rules, params
    assert client.get("/v1/alarms", params={"kind": "loud"}).status_code == 422
    csv = client.get("/v1/alarms", params={"format": "csv", "kind": "anomaly"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    header, row = csv.text.strip().splitlines()
    assert header.startswith("id,rule_id,rule,kind,severity,series_id,device_org,device,quantity,state,opened_at")
    assert ",no2-faults,anomaly,critical," in row and ",2025-12-01T09:07:40.000000Z," in row and '"{""kind"": ""stuck""' in row
    table = pq.read_table(io.BytesIO(client.get("/v1/alarms", params={"format": "parquet"}).content))
    assert table.column("rule").to_pylist() == ["no2-faults", "pm"]
    assert json.loads(table.column("detail").to_pylist()[0])["kind"] == "stuck"
