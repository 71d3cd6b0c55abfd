"""HTTP ingest with the device's own broker login (HTTP Basic): the credentials POST /v1/devices
returns work on the real broker (dynamic security) and on POST /v1/ingest alike; a wrong or
rotated password, or a disabled device, is 401. Real Mosquitto, real PostgreSQL."""

from __future__ import annotations

import base64
import json
import secrets

import psycopg
import pytest
from fastapi.testclient import TestClient
from testbed import DynsecBroker, broker_accepts, make_tenant

pytestmark = pytest.mark.slow

T0 = 1_790_000_000.0


def _basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def _ingest(client: TestClient, auth: dict[str, str], pack: list[dict]):
    return client.post("/v1/ingest", content=json.dumps(pack).encode(),
                       headers={**auth, "Content-Type": "application/senml+json"})


def test_a_device_posts_with_its_broker_login(testbed_app: TestClient, dynsec: DynsecBroker) -> None:
    url = testbed_app.app.state.settings.database_url
    tenant = make_tenant(url, name=f"Basic {secrets.token_hex(3)}", kind="provider")
    made = testbed_app.post("/v1/devices", headers=tenant.headers,
                            json={"device": "air-1", "sensors": [{"quantity": "temperature", "unit": "Cel"}]})
    assert made.status_code == 201, made.text
    mqtt = made.json()["mqtt"]
    assert broker_accepts(dynsec.host, dynsec.port, mqtt["username"], mqtt["password"], mqtt["client_id"])

    pack = [{"bn": "air-1/", "bt": T0, "n": "temperature", "u": "Cel", "v": 21.5}]
    answer = _ingest(testbed_app, _basic(mqtt["username"], mqtt["password"]), pack)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"org": tenant.slug, "device": "air-1", "packs_stored": 1, "readings_stored": 1,
                             "duplicate": False}
    assert _ingest(testbed_app, _basic(mqtt["username"], mqtt["password"]), pack).json()["duplicate"] is True

    refused = _ingest(testbed_app, _basic(mqtt["username"], mqtt["password"] + "x"), pack)
    assert refused.status_code == 401 and "Basic" in refused.headers["www-authenticate"]
    assert _ingest(testbed_app, {"Authorization": "Basic !!!"}, pack).status_code == 401
    assert _ingest(testbed_app, _basic("nobody", mqtt["password"]), pack).status_code == 401

    # rotation: the old password stops working on both doors, the new one works on both
    rotated = testbed_app.post("/v1/devices/air-1/credentials", headers=tenant.headers)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["mqtt"]["password"]
    assert _ingest(testbed_app, _basic(mqtt["username"], mqtt["password"]), pack).status_code == 401
    assert not broker_accepts(dynsec.host, dynsec.port, mqtt["username"], mqtt["password"], mqtt["client_id"])
    assert broker_accepts(dynsec.host, dynsec.port, mqtt["username"], new, mqtt["client_id"])
    second = [{"bn": "air-1/", "bt": T0 + 1, "n": "temperature", "u": "Cel", "v": 22.0}]
    assert _ingest(testbed_app, _basic(mqtt["username"], new), second).status_code == 201

    # a disabled device's login is refused by the broker and by HTTP ingest
    assert testbed_app.post("/v1/devices/air-1/disable", headers=tenant.headers).status_code == 200
    third = [{"bn": "air-1/", "bt": T0 + 2, "n": "temperature", "u": "Cel", "v": 23.0}]
    assert _ingest(testbed_app, _basic(mqtt["username"], new), third).status_code == 401
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT r.value FROM readings r JOIN series s ON s.id = r.series_id"
                              " WHERE s.org = %s ORDER BY r.time", (tenant.slug,)).fetchall()
        verifier = conn.execute("SELECT mqtt_password_sha256 FROM devices WHERE org = %s", (tenant.slug,)).fetchone()[0]
    assert stored == [(21.5,), (22.0,)]
    assert new.encode() not in bytes(verifier)  # a hash, never the password
