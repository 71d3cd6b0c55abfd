"""HTTP ingest: POST /v1/ingest with a device token, through the same pipeline and counters as MQTT
(a real uvicorn-less TestClient over a real PostgreSQL)."""

from __future__ import annotations

import json

import cbor2
import psycopg
from fastapi.testclient import TestClient

from protocol.lpp import encode_lpp
from storage.registry import register_device

T0 = 1_790_000_000.0
URN = "urn:dev:ow:10e2073a01080063"


def _token(client: TestClient, database: str, device: str) -> dict[str, str]:
    with psycopg.connect(database) as conn:
        register_device(conn, org="lab", device=device)
    answer = client.post("/v1/ingest/tokens", json={"device": device})
    assert answer.status_code == 201, answer.text
    assert answer.json()["device"] == device and answer.json()["token"].startswith("cld_")
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def _post(client: TestClient, auth: dict, body: bytes, content_type: str, **params) -> object:
    # the device token replaces the API key of the client's default headers
    return client.post("/v1/ingest", content=body, params=params,
                       headers={**auth, "Content-Type": content_type, "X-API-Key": ""})


def test_senml_json_and_cbor_are_stored_after_commit(empty_client: TestClient, database: str) -> None:
    auth = _token(empty_client, database, "ow-1")
    declared = empty_client.put("/v1/devices/ow-1/senml", json={"base_name": URN, "names": {"temp": "temperature"}})
    assert declared.status_code == 200 and declared.json()["base_name"] == URN
    pack = [{"bn": URN + ":", "bt": T0, "n": "temp", "u": "Cel", "v": 23.1}, {"n": "label", "vs": "Machine Room"},
            {"n": "open", "vb": False}, {"n": "nfv-reader", "vd": "aGkgCg"}]
    answer = _post(empty_client, auth, json.dumps(pack).encode(), "application/senml+json")
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"org": "lab", "device": "ow-1", "packs_stored": 1, "readings_stored": 4,
                             "duplicate": False}
    again = _post(empty_client, auth, json.dumps(pack).encode(), "application/senml+json")
    assert again.status_code == 200 and again.json()["duplicate"] is True  # content-derived identity
    cbor = cbor2.dumps([{-2: URN + ":", -3: T0 + 1, 0: "temp", 1: "K", 2: 300.0}])
    answer = _post(empty_client, auth, cbor, "application/senml+cbor")
    assert answer.status_code == 201 and answer.json()["readings_stored"] == 1
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT s.unit, r.value FROM readings r JOIN series s ON s.id = r.series_id"
                            " WHERE s.org = 'lab' AND s.device = 'ow-1' ORDER BY r.time").fetchall()
        typed = conn.execute("SELECT value_text, value_bool, value_data FROM typed_readings t"
                             " JOIN series s ON s.id = t.series_id WHERE s.org = 'lab' ORDER BY s.quantity").fetchall()
        counters = dict(conn.execute("SELECT name, value FROM ingest_counters").fetchall())
    assert [u for u, _ in rows] == ["Cel", "Cel"] and rows[0][1] == 23.1 and abs(rows[1][1] - 26.85) < 1e-9
    assert typed == [("Machine Room", None, None), (None, None, b"hi \n"), (None, False, None)]
    assert counters["packs_stored"] == 2 and counters["packs_duplicate"] == 1
    assert counters["packs_received"] == counters["packs_stored"] + counters["packs_dead_lettered"]


def test_refusals_are_problem_documents_with_the_dead_letter_reason(empty_client: TestClient,
                                                                    database: str) -> None:
    auth = _token(empty_client, database, "air-1")
    answer = _post(empty_client, auth, b"[{", "application/senml+json")
    assert answer.status_code == 422 and answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["reason"] == "undecodable"
    answer = _post(empty_client, auth, json.dumps([{"n": "ghost/temperature", "v": 1, "t": T0}]).encode(),
                   "application/senml+json")
    assert answer.status_code == 403 and answer.json()["reason"] == "unknown_device"
    assert _post(empty_client, {"Authorization": "Bearer cld_nope"}, b"[]", "application/senml+json").status_code == 401
    assert _post(empty_client, auth, b"[]", "text/plain").status_code == 415
    with psycopg.connect(database) as conn:
        letters = conn.execute("SELECT reason, org, device FROM dead_letters ORDER BY id").fetchall()
        series = conn.execute("SELECT count(*) FROM series WHERE org = 'lab'").fetchone()[0]
    assert letters == [("undecodable", "lab", "air-1"), ("unknown_device", "lab", "air-1")]
    assert series == 0  # nothing created for refused data


def test_lpp_with_a_port(empty_client: TestClient, database: str) -> None:
    auth = _token(empty_client, database, "lora-1")
    frame = encode_lpp([(1, "temperature", 21.5), (2, "humidity", 40.0)])
    assert _post(empty_client, auth, frame, "application/octet-stream").status_code == 422  # no port
    answer = _post(empty_client, auth, frame, "application/octet-stream", port=2)
    assert answer.status_code == 201 and answer.json()["readings_stored"] == 2


def test_a_change_of_the_registry_counts_at_the_next_pack(empty_client: TestClient, database: str) -> None:
    """The API's pipeline caches the registry; each HTTP pack re-reads its publisher and the
    devices behind it, so a sensor moved away from its gateway or disabled a moment ago is
    refused at once (not a second or two later, when the cache would notice)."""
    with psycopg.connect(database) as conn:
        register_device(conn, org="lab", device="gw-9", kind="gateway")
        register_device(conn, org="lab", device="s-1", gateway="gw-9", kind="serial")
        register_device(conn, org="lab", device="s-2", gateway="gw-9", kind="serial")
    answer = empty_client.post("/v1/ingest/tokens", json={"device": "gw-9"})
    auth = {"Authorization": f"Bearer {answer.json()['token']}"}

    def pack(t: float) -> bytes:
        return json.dumps([{"n": "s-1/temperature", "u": "Cel", "v": 20.0, "t": t},
                           {"n": "s-2/temperature", "u": "Cel", "v": 21.0, "t": t}]).encode()

    assert _post(empty_client, auth, pack(T0), "application/senml+json").status_code == 201
    with psycopg.connect(database) as conn:
        conn.execute("UPDATE devices SET enabled = false WHERE org = 'lab' AND device = 's-2'")
    answer = _post(empty_client, auth, pack(T0 + 1), "application/senml+json")
    assert answer.status_code == 403 and answer.json()["reason"] == "device_disabled", answer.text
    with psycopg.connect(database) as conn:
        conn.execute("UPDATE devices SET enabled = true WHERE org = 'lab' AND device = 's-2'")
        conn.execute("UPDATE devices SET gateway = NULL WHERE org = 'lab' AND device = 's-1'")
    answer = _post(empty_client, auth, pack(T0 + 2), "application/senml+json")
    assert answer.status_code == 403 and answer.json()["reason"] == "not_behind_gateway", answer.text
    with psycopg.connect(database) as conn:
        stored = conn.execute("SELECT count(*) FROM readings r JOIN series s ON s.id = r.series_id"
                              " WHERE s.org = 'lab' AND s.device IN ('s-1', 's-2')").fetchone()[0]
    assert stored == 2   # the first pack only
