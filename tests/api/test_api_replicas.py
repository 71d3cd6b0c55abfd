"""API replicas: separate `citylab api` processes on one database share nothing in memory.

Process A runs two uvicorn workers behind its one port (`CITYLAB_API_WORKERS=2`), process
B one more on another port, as a load balancer would see them. What one process did, the
others know: the keyless rate limit counts across them, a key made through one works on
the others at once, and an NGSI-LD subscription made through one is notified of a write
through another, its throttling holding across processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

import httpx
import psycopg
import pytest
from lab_probes import wait
from ngsild_lab import T0, link, seed
from test_ngsild_subscriptions import Receiver, subscription
from testbed import Tenant, make_tenant

from citylab.embedded import PostgresServer, free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RATE_LIMIT = 5
NGSI = "/ngsi-ld/v1"


@dataclass(frozen=True)
class Replicas:
    a: str            # two workers behind this port
    b: str
    a_pid: int
    tenant: Tenant


def _start_api(database: str, port: int, workers: int, home: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CITYLAB_DATABASE_URL": database, "CITYLAB_API_PORT": str(port),
           "CITYLAB_API_WORKERS": str(workers), "CITYLAB_OPEN_RATE_LIMIT": str(RATE_LIMIT),
           "CITYLAB_OPEN_RATE_WINDOW_S": "86400", "CITYLAB_OUTBOUND_ALLOW_LOOPBACK": "true",
           "CITYLAB_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "citylab", "api"], env=env, start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _answers(url: str, proc: subprocess.Popen) -> bool:
    assert proc.poll() is None, f"the API at {url} exited with code {proc.returncode}"
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


wait_until = partial(wait, timeout=120.0)


@pytest.fixture(scope="module")
def replicas(pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE citylab_template')
    database = pg_server.url_for(name)
    seed(database)
    tenant = make_tenant(database, name="Lab", kind="provider", slug="lab")
    home = tmp_path_factory.mktemp("api-replicas")
    ports = free_port(), free_port()
    procs = [_start_api(database, ports[0], 2, home), _start_api(database, ports[1], 1, home)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url, proc in zip(urls, procs):
            wait_until(lambda: _answers(url, proc))
        yield Replicas(urls[0], urls[1], procs[0].pid, tenant)
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_api_workers_serve_behind_one_port(replicas: Replicas) -> None:
    workers = [c for c in _children(replicas.a_pid)
               if "uvicorn" in Path(f"/proc/{c}/cmdline").read_text() or "multiprocessing" in
               Path(f"/proc/{c}/cmdline").read_text()]
    assert len(workers) >= 2, _children(replicas.a_pid)
    for _ in range(6):   # new connections each time: any worker may answer
        assert httpx.get(f"{replicas.a}/v1/series", headers=replicas.tenant.headers).status_code == 200


def test_the_keyless_rate_limit_counts_across_replicas(replicas: Replicas) -> None:
    answers = [httpx.get(f"{url}/open/api/overview").status_code
               for url in (replicas.a, replicas.b, replicas.a, replicas.b, replicas.a, replicas.b, replicas.a)]
    assert answers == [200] * RATE_LIMIT + [429, 429]


def test_a_key_made_through_one_replica_works_on_the_others(replicas: Replicas) -> None:
    made = httpx.post(f"{replicas.a}/v1/keys", json={"role": "consumer"}, headers=replicas.tenant.headers)
    assert made.status_code == 201, made.text
    key = {"Authorization": f"Bearer {made.json()['api_key']}"}
    assert httpx.get(f"{replicas.b}/v1/orgs/me", headers=key).json()["slug"] == "lab"
    revoked = httpx.post(f"{replicas.b}/v1/keys/{made.json()['id']}/revoke", headers=replicas.tenant.headers)
    assert revoked.status_code == 200, revoked.text
    assert httpx.get(f"{replicas.a}/v1/orgs/me", headers=key).status_code == 401


def _observe(url: str, tenant: Tenant, device: str, value: float, minute: int) -> None:
    at = (T0 + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
    r = httpx.patch(f"{url}{NGSI}/entities/urn:ngsi-ld:AirQualityObserved:lab:{device}/attrs",
                    json={"pm25": {"value": value, "observedAt": at}},
                    headers={**tenant.headers, **link("Environment")})
    assert r.status_code == 204, r.text


def test_subscriptions_and_their_throttling_hold_across_replicas(replicas: Replicas) -> None:
    receiver = Receiver()
    try:
        headers = {**replicas.tenant.headers, **link("Environment")}
        throttled, marker = "urn:ngsi-ld:Subscription:a-throttled", "urn:ngsi-ld:Subscription:b-marker"
        for sub_id, extra in ((throttled, {"throttling": 3600}), (marker, {})):
            made = httpx.post(f"{replicas.a}{NGSI}/subscriptions", headers=headers,
                              json={**subscription(receiver.url), "id": sub_id, **extra})
            assert made.status_code == 201, made.text

        def sent_to(sub_id: str) -> int:
            return sum(1 for _, body in receiver.received if body["subscriptionId"] == sub_id)

        _observe(replicas.b, replicas.tenant, "air-1", 31.0, 40)   # B notifies what A subscribed
        wait_until(lambda: sent_to(marker) == 1 and sent_to(throttled) == 1, timeout=30)
        _observe(replicas.a, replicas.tenant, "air-1", 32.0, 41)   # within the throttling, through A
        # both subscriptions of one job are handled in id order: once the marker has its second
        # notification, the throttled one has been decided
        wait_until(lambda: sent_to(marker) == 2, timeout=30)
        assert sent_to(throttled) == 1
        status = httpx.get(f"{replicas.b}{NGSI}/subscriptions/{throttled}", headers=headers).json()
        assert status["notification"]["timesSent"] == 1
    finally:
        receiver.close()


def test_a_throttled_notification_is_claimed_once(database: str) -> None:
    """Two processes noticing changes at the same instant: one claim wins, the other is throttled."""
    from datetime import UTC, datetime

    from storage.ngsild.subscriptions import claim_notification, create_subscription

    tenant = make_tenant(database, name="Lab", kind="provider", slug="lab")
    with psycopg.connect(database, autocommit=True) as one, psycopg.connect(database, autocommit=True) as two:
        create_subscription(one, id="urn:ngsi-ld:Subscription:t", org_id=tenant.org_id, org="lab", tenant=None,
                            subscription={}, context=[], active=True, expires_at=None, throttling_s=60.0)
        now = datetime.now(UTC)
        claims = [claim_notification(conn, id="urn:ngsi-ld:Subscription:t", at=now) for conn in (one, two)]
        assert claims == [True, False]
        assert claim_notification(two, id="urn:ngsi-ld:Subscription:t", at=now + timedelta(seconds=61))
