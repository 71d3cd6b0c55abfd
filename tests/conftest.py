"""Session fixtures: a real PostgreSQL and a real Mosquitto on free loopback ports.

Both are private instances started from the system binaries by the same code as
`citylab up` (citylab.embedded). Each test that needs a database gets a fresh one,
cloned from a migrated template; each test that needs topics uses its own org
(the topic prefix `lab/{org}/...`), so tests never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from citylab.embedded import MosquittoServer, PostgresServer, start_mosquitto, start_postgres
from storage.migrate import migrate

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
TEMPLATE_DB = "citylab_template"


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    # Not under pytest's 0700 tmp: the servers may run as their own users.
    path = Path(tempfile.mkdtemp(prefix="citylab-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(services_dir: Path) -> Iterator[PostgresServer]:
    server = start_postgres(services_dir, durable=False)
    with psycopg.connect(server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    with psycopg.connect(server.url_for(TEMPLATE_DB)) as conn:
        migrate(conn)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mqtt_broker(services_dir: Path) -> Iterator[MosquittoServer]:
    server = start_mosquitto(services_dir)
    yield server
    server.stop()


@pytest.fixture
def database(pg_server: PostgresServer) -> Iterator[str]:
    """URL of a fresh, migrated database of its own."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    yield pg_server.url_for(name)
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def org() -> str:
    """A topic prefix of the test's own."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(os.environ.get("CITYLAB_TEST_ARTIFACTS", REPO / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser():
    """A headless Debian Chromium driven by Playwright (no browser download)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium; make setup installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
