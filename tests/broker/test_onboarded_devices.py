"""Devices onboarded through the API, publishing with real MQTT clients through the
dynsec broker into ingest: A cannot publish under B's prefix (nothing of it is
stored), a disabled device cannot connect, a rotated password stops working."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from stack import running_stack  # noqa: E402
from testbed import DYNSEC_ADMIN, dynsec_broker, make_tenant  # noqa: E402

from citylab.settings import Settings  # noqa: E402
from lab_probes import wait  # noqa: E402

pytestmark = pytest.mark.slow


def _pub(creds: dict, topic: str, payload: str) -> subprocess.CompletedProcess:
    host, port = creds["url"].removeprefix("mqtt://").split(":")
    return subprocess.run(["mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-i", creds["client_id"],
                           "-u", creds["username"],
                           "-P", creds["password"], "-t", topic, "-m", payload], capture_output=True, text=True,
                          timeout=20)


def test_onboarded_devices_through_broker_and_ingest(database: str, services_dir: Path) -> None:
    with dynsec_broker(services_dir / "onboarded") as broker:
        settings = Settings(database_url=database, mqtt_url=broker.url, dynsec_username=DYNSEC_ADMIN,
                            dynsec_password=broker.admin_password)
        a = make_tenant(database, name="Alpha", kind="provider")
        b = make_tenant(database, name="Beta", kind="provider")
        with running_stack(settings, broker) as stack:
            api = httpx.Client(base_url=stack.api, timeout=20)
            dev_a = api.post("/v1/devices", headers=a.headers, json={"device": "a-1"}).json()
            dev_b = api.post("/v1/devices", headers=b.headers, json={"device": "b-1"}).json()
            now = int(time.time())
            forged = f'[{{"bt": {now}, "bn": "b-1/", "bid": "x", "seq": 0, "n": "t", "u": "Cel", "v": 66}}]'
            _pub(dev_a["mqtt"], f"{dev_b['topic_prefix']}up", forged)
            own = f'[{{"bt": {now}, "bn": "a-1/", "bid": "x", "seq": 0, "n": "t", "u": "Cel", "v": 1}}]'
            assert _pub(dev_a["mqtt"], f"{dev_a['topic_prefix']}up", own).returncode == 0
            wait(lambda: api.get("/v1/series", headers=a.headers).json(), 20, "a series of the own reading")
            assert [s["device"] for s in api.get("/v1/series", headers=a.headers).json()] == ["a-1"]
            with psycopg.connect(database) as conn:
                assert conn.execute("SELECT count(*) FROM series WHERE device = 'b-1'").fetchone()[0] == 0
                assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
            # rotation: the old password stops working, the new one works
            rotated = api.post("/v1/devices/a-1/credentials", headers=a.headers).json()
            assert _pub(dev_a["mqtt"], f"{dev_a['topic_prefix']}status", "x").returncode != 0
            assert _pub(rotated["mqtt"], f"{dev_a['topic_prefix']}status", "x").returncode == 0
            # disabling: the device can no longer connect
            assert api.post("/v1/devices/a-1/disable", headers=a.headers).json()["enabled"] is False
            assert _pub(rotated["mqtt"], f"{dev_a['topic_prefix']}status", "x").returncode != 0
            assert api.get("/v1/devices", headers=a.headers).json()[0]["enabled"] is False
