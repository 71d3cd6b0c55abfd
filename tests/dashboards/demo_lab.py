"""`citylab up --demo` in a private home, as a context manager for session fixtures.

Shared by tests/dashboards and tests/console (each imports it by path: the test
folders are not packages). The lab runs until the session ends; `key` is an
admin API key of the demo district's organisation `lab`, made directly in the
database, so that the console sees the demo devices.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from lab_probes import read_json, wait

DEMO_ORG = "lab"


@dataclass(frozen=True)
class DemoLab:
    home: Path
    api_url: str
    database_url: str
    mqtt_url: str
    key: str
    log: Path


def _admin_key(database_url: str) -> str:
    """An admin key of the demo district's organisation (`citylab up --demo` registers it)."""
    from storage import connect
    from storage.tenants import create_key, create_org, list_orgs

    with connect(database_url, autocommit=True) as conn:
        org = next((o for o in list_orgs(conn) if o.slug == DEMO_ORG), None)
        if org is None:
            org = create_org(conn, name="Demo district", kind="provider", slug=DEMO_ORG)
        _, key = create_key(conn, org_id=org.id, role="admin", label="tests")
    return key


def district_reported(database_url: str) -> bool:
    """Every gateway of the demo has said it is online and every other device has a stored reading."""
    from storage import connect

    with connect(database_url, autocommit=True) as conn:
        silent = conn.execute(
            "SELECT count(*) FROM devices d WHERE CASE WHEN d.kind = 'gateway'"
            " THEN NOT EXISTS (SELECT 1 FROM gateway_status g"
            "                  WHERE g.org = d.org AND g.device = d.device AND g.state = 'online')"
            " ELSE NOT EXISTS (SELECT 1 FROM series s JOIN readings r ON r.series_id = s.id"
            "                  WHERE s.org = d.org AND s.device = d.device) END").fetchone()[0]
    return silent == 0


@contextmanager
def demo_lab(artifacts: Path, *, name: str, wait_readings: int = 1, timeout_s: float = 150.0,
             every_device: bool = False) -> Iterator[DemoLab]:
    """The lab once `wait_readings` readings are stored and, with `every_device`, once every device
    of the district has reported (`district_reported`)."""
    home = Path(tempfile.mkdtemp(prefix=f"citylab-{name}-"))
    home.chmod(0o755)
    env = {**os.environ, "CITYLAB_HOME": str(home), "CITYLAB_API_PORT": "0"}
    for key in ("CITYLAB_DATABASE_URL", "CITYLAB_MQTT_URL"):
        env.pop(key, None)
    log = artifacts / f"{name}_lab.log"
    out = log.open("w")
    lab = subprocess.Popen([sys.executable, "-m", "citylab", "up", "--demo"], env=env, stdout=out,
                           stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout_s
        # a lab that exits stops the waits: the checks below then fail with its log
        wait(lambda: lab.poll() is not None or read_json(home / "lab.json"), timeout_s, "the lab to start",
             detail=log.read_text)
        state = read_json(home / "lab.json")
        assert state, f"the lab did not start: {log.read_text()}"
        key = _admin_key(state["database_url"])
        headers = {"Authorization": f"Bearer {key}"}

        def stored() -> int:
            try:
                return httpx.get(f"{state['api_url']}/v1/status", headers=headers, timeout=5).json()["readings_stored"]
            except (httpx.HTTPError, KeyError, ValueError):
                return 0

        wait(lambda: lab.poll() is not None or stored() >= wait_readings, max(0.0, deadline - time.monotonic()),
             f"{wait_readings} stored readings", detail=lambda: log.read_text()[-3000:])
        assert stored() >= wait_readings, f"no readings stored within {timeout_s} s: {log.read_text()[-3000:]}"
        if every_device:
            wait(lambda: district_reported(state["database_url"]), 60,
                 "every gateway online and a reading of every device", detail=lambda: log.read_text()[-3000:])
        yield DemoLab(home, state["api_url"], state["database_url"], state["mqtt_url"], key, log)
    finally:
        lab.send_signal(signal.SIGINT)
        try:
            lab.wait(timeout=60)
        except subprocess.TimeoutExpired:
            lab.kill()
            lab.wait()
        out.close()


def publish_demo_product(database_url: str, *, title: str = "Air quality, central district") -> int:
    """A data product of the demo org's air-quality series (as a provider would publish it)."""
    from storage import connect
    from storage.products import create_product
    from storage.tenants import list_orgs

    with connect(database_url, autocommit=True) as conn:
        org = next(o for o in list_orgs(conn) if o.slug == DEMO_ORG)
        ids = [row[0] for row in conn.execute(
            "SELECT s.id FROM series s JOIN devices d ON d.org = s.org AND d.device = s.device"
            " WHERE d.org = %s AND s.quantity IN ('pm2_5', 'pm10', 'no2') ORDER BY s.id", (DEMO_ORG,))]
        product = create_product(conn, org_id=org.id, org_slug=org.slug, title=title,
                                 description="PM2.5, PM10 and NO2 from the demo district's air sensors.",
                                 licence="CC-BY-4.0", terms="Attribution.", price_month=None, currency="NOK",
                                 series_ids=ids)
    return product.id
