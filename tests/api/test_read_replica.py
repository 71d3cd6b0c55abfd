"""The API on a real PostgreSQL streaming replica (pg_basebackup, a replication slot).

A primary and its hot standby are started for this module on free ports, by the code
`citylab up --read-replica` runs. Reads of the /v1 queries, exports and the standard
faces go to the replica; writes, authentication and the audit log to the primary. A read
right after a write sees it (the replica's replay is paused to make the lag real); with
the replica away, or no longer in recovery, reads go to the primary and /health says so.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from lab_probes import wait
from ngsild_lab import link
from seeded_lab import seed
from testbed import make_tenant

from api import create_app
from citylab.embedded import PostgresServer, start_postgres, start_replica
from citylab.settings import Settings
from citylab.supervisor import RestartPolicy, Server, Supervisor
from storage.migrate import migrate

pytestmark = pytest.mark.slow

TEMPLATE = "replica_template"
STA = "/sta/v1.1"


@dataclass(frozen=True)
class Cluster:
    primary: PostgresServer
    replica: PostgresServer


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="citylab-replica-"))
    root.chmod(0o755)
    primary = start_postgres(root, durable=False)
    with psycopg.connect(primary.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    with psycopg.connect(primary.url_for(TEMPLATE)) as conn:
        migrate(conn)
    replica = start_replica(root, primary)
    try:
        yield Cluster(primary, replica)
    finally:
        replica.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)


wait_until = partial(wait, timeout=30.0)


def _connects(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


@dataclass(frozen=True)
class Pair:
    primary: str
    replica: str


@pytest.fixture
def pair(cluster: Cluster) -> Iterator[Pair]:
    """A fresh database on the primary, and the same database as the replica serves it."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster.primary.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    if cluster.replica.process is None or cluster.replica.process.poll() is not None:
        cluster.replica.start()
    wait_until(lambda: _connects(cluster.replica.url_for(name)))
    yield Pair(cluster.primary.url_for(name), cluster.replica.url_for(name))
    with psycopg.connect(cluster.primary.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _client(pair: Pair, headers: dict[str, str], *, replica_url: str | None = None, wait_ms: int = 60_000
            ) -> TestClient:
    """The app on the pair; by default a read waits as long as it takes the replica to replay (a
    loaded machine may take a while), so that where a read goes never depends on timing."""
    settings = Settings(database_url=pair.primary, database_replica_url=replica_url or pair.replica,
                        replica_max_wait_ms=wait_ms)
    return TestClient(create_app(settings), headers=headers)


def _caught_up(primary_url: str, replica_url: str) -> None:
    with psycopg.connect(primary_url, autocommit=True) as conn:
        lsn = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
    with psycopg.connect(replica_url, autocommit=True) as conn:
        wait_until(lambda: conn.execute("SELECT pg_last_wal_replay_lsn() >= %s", (lsn,)).fetchone()[0])


def test_reads_go_to_the_replica_and_writes_to_the_primary(pair: Pair) -> None:
    lab = seed(pair.primary)
    tenant = make_tenant(pair.primary, name="Lab", kind="provider", slug="lab")
    _caught_up(pair.primary, pair.replica)
    with _client(pair, tenant.headers) as client:
        reads = client.app.state.routes.reads
        page = client.get(f"/v1/series/{lab.pm25}/readings",
                          params={"start": "2025-03-01T12:00:00Z", "end": "2025-03-01T13:00:00Z"})
        assert page.status_code == 200, page.text
        assert page.json()["count"] == len([t for t in lab.times if t.hour == 12])
        csv = client.get("/v1/exports/readings", params={"series_id": lab.no2, "start": "2025-03-01T12:00:00Z",
                                                         "end": "2025-03-01T13:00:00Z"})
        assert csv.status_code == 200 and csv.text.count("\n") == 1 + 3 - 1   # the edge at T0 + 1 h is out
        stream = client.get(f"{STA}/Datastreams")
        assert stream.status_code == 200 and len(stream.json()["value"]) == 3
        assert client.get("/ngsi-ld/v1/types", headers={"Accept": "application/json"}).status_code == 200
        entities = client.get("/ngsi-ld/v1/entities", params={"type": "AirQualityObserved"}, headers=link("Environment"))
        assert entities.status_code == 200 and [e["id"] for e in entities.json()] == [
            "urn:ngsi-ld:AirQualityObserved:lab:air-042"], entities.text
        history = client.get("/ngsi-ld/v1/temporal/entities", headers=link("Environment"),
                             params={"type": "AirQualityObserved", "timerel": "between", "attrs": "no2",
                                     "timeAt": "2025-03-01T12:00:00Z", "endTimeAt": "2025-03-01T13:00:00Z"})
        assert history.status_code == 200 and len(history.json()[0]["no2"]) == 2, history.text
        assert client.get("/catalog", headers={"Accept": "text/turtle"}).status_code == 200
        assert client.get("/open/api/overview").status_code == 200
        assert reads["replica"] == 8 and reads["primary"] == 0, reads
        assert 'citylab_db_reads_total{server="replica"} 8.0' in client.get("/metrics").text
        # the reads were audited, on the primary
        with psycopg.connect(pair.primary) as conn:
            audited = conn.execute("SELECT action, rows FROM audit_log WHERE series_id IS NOT NULL"
                                   " ORDER BY id").fetchall()
        assert ("read.readings", page.json()["count"]) in audited
        assert ("export.readings", 2) in audited
        health = client.get("/health").json()["components"]
        assert health["replica"]["up"] is True and health["replica"]["lag_seconds"] is not None


def test_a_read_right_after_a_write_sees_it(pair: Pair) -> None:
    seed(pair.primary)
    tenant = make_tenant(pair.primary, name="Lab", kind="provider", slug="lab")
    _caught_up(pair.primary, pair.replica)
    with psycopg.connect(pair.replica, autocommit=True) as replica:
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            with _client(pair, tenant.headers, wait_ms=50) as client:
                reads = client.app.state.routes.reads
                made = client.post(f"{STA}/Things", json={"name": "fresh-1", "description": "onboarded just now"})
                assert made.status_code == 201, made.text
                key = client.post("/v1/keys", json={"role": "consumer"})
                assert key.status_code == 201, key.text
                # the replica has not replayed the onboarding: the lag is real
                assert replica.execute("SELECT count(*) FROM devices WHERE device = 'fresh-1'").fetchone()[0] == 0
                found = client.get(f"{STA}/Things", params={"$filter": "name eq 'fresh-1'"})
                assert [t["name"] for t in found.json()["value"]] == ["fresh-1"]
                assert reads["primary"] == 1 and reads["replica"] == 0
                # the new key works at once: keys are checked on the primary
                fresh = client.get("/v1/series", headers={"Authorization": f"Bearer {key.json()['api_key']}"})
                assert fresh.status_code == 200, fresh.text
                replica.execute("SELECT pg_wal_replay_resume()")
                wait_until(lambda: replica.execute(
                    "SELECT count(*) FROM devices WHERE device = 'fresh-1'").fetchone()[0] == 1)
                # the replica caught up: reads go there again (once it also has the latest audit rows)
                wait_until(lambda: [t["name"] for t in client.get(
                    f"{STA}/Things", params={"$filter": "name eq 'fresh-1'"}).json()["value"]] == ["fresh-1"]
                    and reads["replica"] >= 1)
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")


def test_reads_fall_back_to_the_primary_while_the_replica_is_away(cluster: Cluster, pair: Pair) -> None:
    lab = seed(pair.primary)
    tenant = make_tenant(pair.primary, name="Lab", kind="provider", slug="lab")
    _caught_up(pair.primary, pair.replica)
    params = {"start": "2025-03-01T12:00:00Z", "end": "2025-03-01T12:10:00Z"}
    with _client(pair, tenant.headers) as client:
        reads = client.app.state.routes.reads
        assert client.get(f"/v1/series/{lab.pm25}/readings", params=params).status_code == 200
        assert reads["replica"] == 1
        cluster.replica.stop()
        try:
            page = client.get(f"/v1/series/{lab.pm25}/readings", params=params)
            assert page.status_code == 200 and page.json()["count"] > 0
            assert reads["primary"] == 1
            health = client.get("/health")
            assert health.status_code == 200, health.text   # the API serves on: the replica is not core
            replica = health.json()["components"]["replica"]
            assert replica["up"] is False and "primary" in replica["detail"]
        finally:
            cluster.replica.start()
        wait_until(lambda: client.get("/health").json()["components"]["replica"]["up"])
        before = reads["replica"]
        wait_until(lambda: client.get(f"/v1/series/{lab.pm25}/readings", params=params).status_code == 200
                   and reads["replica"] > before)


def test_a_server_not_in_recovery_is_not_read_as_a_replica(pair: Pair) -> None:
    """A promoted replica (or a misconfigured URL) has its own history: never read it as the replica."""
    lab = seed(pair.primary)
    tenant = make_tenant(pair.primary, name="Lab", kind="provider", slug="lab")
    with _client(pair, tenant.headers, replica_url=pair.primary) as client:
        reads = client.app.state.routes.reads
        assert [s["id"] for s in client.get("/v1/series").json()] == [lab.pm25, lab.no2, lab.noise]
        assert reads["replica"] == 0 and reads["primary"] >= 1
        replica = client.get("/health").json()["components"]["replica"]
        assert replica["up"] is False and "not in recovery" in replica["detail"]


def test_the_supervisor_restarts_the_replica_which_catches_up(cluster: Cluster, pair: Pair) -> None:
    supervisor = Supervisor(policy=RestartPolicy(backoff_initial_s=0.1, backoff_max_s=0.5))
    entry = supervisor.adopt(Server("replica", cluster.replica), running=cluster.replica.process)
    cluster.replica.kill()
    with psycopg.connect(pair.primary, autocommit=True) as conn:   # written while the replica is down
        conn.execute("INSERT INTO devices (device, org) VALUES ('while-away', 'lab')")

    def restarted() -> bool:
        supervisor.poll()
        return entry.up and entry.restarts == 1

    wait_until(restarted, timeout=60)
    assert supervisor.snapshot()["replica"]["up"] is True
    wait_until(lambda: _connects(pair.replica))
    _caught_up(pair.primary, pair.replica)
    with psycopg.connect(pair.replica) as conn:
        assert conn.execute("SELECT count(*) FROM devices WHERE device = 'while-away'").fetchone()[0] == 1


def test_a_replica_of_another_cluster_is_cloned_again() -> None:
    """The lab's primary initialised anew (its directory removed): the old replica is not kept
    as the new one's standby; it is cloned again, and streams."""
    root = Path(tempfile.mkdtemp(prefix="citylab-reclone-"))
    root.chmod(0o755)
    try:
        first = start_postgres(root, durable=False)
        port = first.port
        start_replica(root, first).stop()
        first.stop()
        shutil.rmtree(root / "postgres")
        (root / "postgres.secret").unlink()
        second = start_postgres(root, port=port, durable=False)
        replica = start_replica(root, second)
        try:
            with psycopg.connect(second.url, autocommit=True) as conn:
                conn.execute("CREATE TABLE marker (a int)")
            _caught_up(second.url, replica.url)
            with psycopg.connect(replica.url) as conn:
                assert conn.execute("SELECT to_regclass('marker') IS NOT NULL").fetchone()[0]
        finally:
            replica.stop()
            second.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
