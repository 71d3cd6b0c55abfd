"""Device names are per organisation: two tenants both have `air-001`, and a name
or DevEUI taken elsewhere reveals nothing (real database, real dynsec broker)."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient
from testbed import make_tenant

from citylab.settings import Settings

SENSORS = [{"quantity": "pm2_5", "unit": "ug/m3", "interval_s": 10}]


def test_two_organisations_both_have_air_001(testbed_app: TestClient, testbed_settings: Settings) -> None:
    client = testbed_app
    url = testbed_settings.database_url
    a = make_tenant(url, name="Alpha Air", kind="provider")
    b = make_tenant(url, name="Beta Air", kind="provider")
    made = {}
    for tenant in (a, b):
        r = client.post("/v1/devices", headers=tenant.headers, json={"device": "air-001", "sensors": SENSORS})
        assert r.status_code == 201, r.text
        made[tenant.slug] = r.json()
    assert made[a.slug]["mqtt"]["username"] == f"{a.slug}.air-001"
    assert made[b.slug]["mqtt"]["username"] == f"{b.slug}.air-001"
    assert made[a.slug]["topic_prefix"] == f"lab/{a.slug}/air-001/"
    # each sees its own device and series only
    series = {}
    for tenant in (a, b):
        devices = client.get("/v1/devices", headers=tenant.headers).json()
        assert [(d["device"], d["org"]) for d in devices] == [("air-001", tenant.slug)]
        listed = client.get("/v1/series", headers=tenant.headers).json()
        assert [(s["device"], s["provider"]) for s in listed] == [("air-001", tenant.slug)]
        series[tenant.slug] = listed[0]["id"]
        assert devices[0]["series"] == [{"id": series[tenant.slug], "quantity": "pm2_5", "unit": "ug/m3"}]
    assert series[a.slug] != series[b.slug]
    # disabling A's air-001 leaves B's alone
    assert client.post("/v1/devices/air-001/disable", headers=a.headers).json()["enabled"] is False
    assert client.get("/v1/devices/air-001", headers=b.headers).json()["enabled"] is True
    # a name taken in one's own organisation is a conflict that says so
    again = client.post("/v1/devices", headers=a.headers, json={"device": "air-001"})
    assert again.status_code == 409 and "your organisation already has" in again.json()["detail"]


def test_a_taken_dev_eui_is_refused_without_saying_by_whom(testbed_app: TestClient,
                                                          testbed_settings: Settings) -> None:
    client = testbed_app
    url = testbed_settings.database_url
    a = make_tenant(url, name="Alpha Lora", kind="provider")
    b = make_tenant(url, name="Beta Lora", kind="provider")
    eui = "70B3D57ED0001234"
    r = client.post("/v1/devices", headers=a.headers, json={"device": "secret-node", "lora": {"dev_eui": eui}})
    assert r.status_code == 201, r.text
    answers = []
    for tenant, name in ((b, "mine"), (b, "secret-node"), (a, "other-node")):
        r = client.post("/v1/devices", headers=tenant.headers,
                        json={"device": name, "lora": {"dev_eui": eui.lower()}})
        assert r.status_code == 409, r.text
        answers.append(r.json()["detail"])
        assert a.slug not in r.text and "secret-node" not in r.text
    # the same answer whoever holds it, so it is no oracle of who does
    assert answers[0] == answers[2]
    # and B may still use the name A uses
    ok = client.post("/v1/devices", headers=b.headers, json={"device": "secret-node"})
    assert ok.status_code == 201
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT org, device, dev_eui FROM devices WHERE device = 'secret-node' ORDER BY org"
                            ).fetchall()
    assert sorted(rows) == sorted([(a.slug, "secret-node", eui), (b.slug, "secret-node", None)])
