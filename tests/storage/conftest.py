"""A real TimescaleDB engine: PGlite built with TimescaleDB 2.23, over the wire protocol.

`make setup` installs it with npm into tools/pglite/node_modules. It serves one
connection at a time, so each test module gets an engine of its own and uses a
single connection.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from citylab.embedded import free_port
from citylab.supervisor import _own_group_and_death_signal
from lab_probes import wait

TOOLS = Path(__file__).resolve().parents[2] / "tools" / "pglite"


@pytest.fixture(scope="module")
def timescale_url() -> Iterator[str]:
    node = shutil.which("node")
    if node is None or not (TOOLS / "node_modules" / "@unni-craftsman" / "pglite").exists():
        pytest.fail("the TimescaleDB test engine is not installed: run `make setup` (npm install in tools/pglite)")
    port = free_port()
    proc = subprocess.Popen([node, str(TOOLS / "server.mjs"), "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=_own_group_and_death_signal)
    line = proc.stdout.readline()
    assert line.startswith("listening"), line + proc.stdout.read()
    url = f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres?sslmode=disable"
    refusals: list[psycopg.OperationalError] = []

    def connects() -> bool:
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            refusals.append(exc)
            return False
        return True

    wait(connects, 30, "the TimescaleDB test engine to accept connections", detail=lambda: refusals[-1])
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def empty_database(pg_server) -> Iterator[str]:
    """URL of a fresh database with no migration applied (for tests of the migrations themselves)."""
    name = f"m_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg_server.url_for(name)
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
