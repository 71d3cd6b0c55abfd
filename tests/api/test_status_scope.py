"""Each tenant sees its own /v1/status; the lab-wide counters and audit log are for
the operator role, which only the command line grants (real database, real ingest
pipeline, real `citylab admin` process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
from fastapi.testclient import TestClient
from testbed import Tenant, make_tenant

from api import create_app
from citylab.settings import Settings
from ingest import Message, Pipeline
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import up_topic
from storage.registry import register_device

T = 1_790_000_000.0


def _pack(org: str, device: str, seq: int, n: int) -> Message:
    records = tuple(Record(f"{device}/t", float(i), T + seq * 10 + i, "Cel") for i in range(n))
    return Message(topic=up_topic(org, device), payload=encode_pack(Pack("b", seq, records)), mid=seq + 1, qos=1,
                   content_type=None, received_us=int(T * 1e6))


def _operator_key(database: str, org: str) -> Tenant:
    env = {**os.environ, "CITYLAB_DATABASE_URL": database}
    done = subprocess.run([sys.executable, "-m", "citylab", "admin", "create-key", "--org", org, "--role",
                           "operator", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    return Tenant(made["org_id"], org, made["api_key"])


def test_each_tenant_sees_its_own_status_and_operators_the_lab(database: str) -> None:
    a = make_tenant(database, name="Alpha", kind="provider")
    b = make_tenant(database, name="Beta", kind="provider")
    staff = make_tenant(database, name="Lab staff", kind="city")
    with psycopg.connect(database) as conn:
        for tenant in (a, b):
            register_device(conn, org=tenant.slug, device="air-001")  # the same name in both
        conn.commit()
    pipeline = Pipeline(database)
    try:
        pipeline.commit([_pack(a.slug, "air-001", 0, 3), _pack(a.slug, "air-001", 1, 2),
                         _pack(b.slug, "air-001", 0, 4),
                         Message(topic=up_topic(a.slug, "air-001"), payload=b"\x00junk", mid=9, qos=1,
                                 content_type=None, received_us=0),
                         Message(topic=up_topic(b.slug, "ghost"), payload=_pack(b.slug, "ghost", 0, 1).payload,
                                 mid=10, qos=1, content_type=None, received_us=0)])
        pipeline.commit([_pack(a.slug, "air-001", 1, 2)])  # a redelivery
    finally:
        pipeline.close()
    operator = _operator_key(database, staff.slug)
    with TestClient(create_app(Settings(database_url=database))) as client:
        mine = {t.slug: client.get("/v1/status", headers=t.headers).json() for t in (a, b, staff)}
        assert mine[a.slug]["scope"] == "organisation" and mine[a.slug]["org"] == a.slug
        assert {k: mine[a.slug][k] for k in ("packs_received", "packs_stored", "packs_dead_lettered",
                                               "packs_duplicate", "readings_stored", "dead_letters", "devices",
                                               "series")} == {
            "packs_received": 3, "packs_stored": 2, "packs_dead_lettered": 1, "packs_duplicate": 1,
            "readings_stored": 5, "dead_letters": 1, "devices": 1, "series": 1}
        assert (mine[b.slug]["packs_stored"], mine[b.slug]["readings_stored"], mine[b.slug]["dead_letters"]) == (1, 4, 1)
        assert mine[staff.slug]["packs_received"] == 0 and mine[staff.slug]["newest_reading"] is None
        assert mine[a.slug]["newest_reading"] != mine[b.slug]["newest_reading"]
        # lab-wide: operators only
        for tenant in (a, b, staff):
            r = client.get("/v1/status", headers=tenant.headers, params={"scope": "lab"})
            assert r.status_code == 403 and "operator" in r.json()["detail"]
        lab = client.get("/v1/status", headers=operator.headers, params={"scope": "lab"}).json()
        assert lab["scope"] == "lab" and lab["org"] is None
        assert (lab["packs_received"], lab["packs_stored"], lab["packs_dead_lettered"], lab["devices"]) == (5, 3, 2, 2)
        assert lab["packs_received"] == lab["packs_stored"] + lab["packs_dead_lettered"]
        # the operator key is its organisation's key otherwise
        me = client.get("/v1/orgs/me", headers=operator.headers).json()
        assert me["role"] == "operator" and me["slug"] == staff.slug
        assert client.get("/v1/status", headers=operator.headers).json()["org"] == staff.slug
        # an organisation's admin cannot make itself an operator
        r = client.post("/v1/keys", headers=a.headers, json={"role": "operator"})
        assert r.status_code == 422
        # the audit log: each its own; the operator the lab's
        client.post("/v1/keys", headers=b.headers, json={"role": "consumer", "label": "b's"})
        a_rows = client.get("/v1/audit", headers=a.headers).json()
        assert all(r["org_id"] == a.org_id or r["owner_org"] == a.org_id for r in a_rows)
        assert client.get("/v1/audit", headers=a.headers, params={"scope": "lab"}).status_code == 403
        lab_rows = client.get("/v1/audit", headers=operator.headers, params={"scope": "lab"}).json()
        assert any(r["owner_org"] == b.org_id and r["action"] == "key.create" for r in lab_rows)
        assert any(r["owner_org"] == staff.org_id and r["action"] == "key.create" and r["actor"] == "cli"
                   and r["detail"]["role"] == "operator" for r in lab_rows)
