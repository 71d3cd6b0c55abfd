"""The first pack of a device onboarded through the API a moment ago, published at once
through the dynsec broker, is stored: ingest's registry cache, read just before, does not
make it a dead letter (real broker, database and ingest)."""

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
from lab_probes import wait
from testbed import DYNSEC_ADMIN, dynsec_broker, make_tenant  # noqa: E402

from citylab.settings import Settings  # noqa: E402

pytestmark = pytest.mark.slow

DEVICES = 4


def _publish(creds: dict, topic: str, payload: str) -> None:
    host, port = creds["url"].removeprefix("mqtt://").split(":")
    done = subprocess.run(["mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-i", creds["client_id"],
                           "-u", creds["username"], "-P", creds["password"], "-t", topic, "-m", payload],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr


def test_each_onboarded_device_first_pack_is_stored(database: str, services_dir: Path) -> None:
    with dynsec_broker(services_dir / "first-pack") as broker:
        settings = Settings(database_url=database, mqtt_url=broker.url, dynsec_username=DYNSEC_ADMIN,
                            dynsec_password=broker.admin_password)
        tenant = make_tenant(database, name="Gamma", kind="provider")
        with running_stack(settings, broker) as stack:
            api = httpx.Client(base_url=stack.api, timeout=20)
            totals = stack.ingest.totals
            now = int(time.time())
            for i in range(DEVICES):
                # each device is onboarded right after ingest read its registry for the previous one
                device = api.post("/v1/devices", headers=tenant.headers, json={"device": f"g-{i}"}).json()
                pack = f'[{{"bt": {now}, "bn": "g-{i}/", "bid": "b", "seq": 0, "n": "t", "u": "Cel", "v": {i}}}]'
                _publish(device["mqtt"], f"{device['topic_prefix']}up", pack)
                wait(lambda i=i: totals["packs_received"] > i, 20, f"g-{i}'s pack to be received")
            assert (totals["packs_received"], totals["packs_stored"], totals["packs_dead_lettered"]) == \
                (DEVICES, DEVICES, 0)
            with psycopg.connect(database) as conn:
                assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
                stored = conn.execute("SELECT s.device, r.value FROM readings r JOIN series s ON s.id = r.series_id"
                                      " ORDER BY s.device").fetchall()
            assert stored == [(f"g-{i}", float(i)) for i in range(DEVICES)]
