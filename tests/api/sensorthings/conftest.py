"""Fixtures of the SensorThings tests: the lab of sta_lab.py, TestClients per
tenant, and a real uvicorn serving the app (for frost-sta-client).

`sta_lab` is shared by the tests of one module, which only read it; tests that
write, or count audit rows, take `fresh_lab`, a database of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from fastapi.testclient import TestClient
from sta_lab import ROOT, StaLab, client_of, seed_sta
from stack import serving

from api import create_app
from citylab.embedded import free_port
from citylab.embedded import PostgresServer
from citylab.settings import Settings

TEMPLATE_DB = "citylab_template"


@contextmanager
def _database(pg_server: PostgresServer) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    try:
        yield pg_server.url_for(name)
    finally:
        with psycopg.connect(pg_server.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def sta_lab(pg_server: PostgresServer) -> Iterator[StaLab]:
    with _database(pg_server) as url:
        yield seed_sta(url)


@pytest.fixture
def fresh_lab(database: str) -> StaLab:
    return seed_sta(database)


@pytest.fixture(scope="module")
def sta(sta_lab: StaLab) -> Iterator[TestClient]:
    """A client with the admin key of organisation `lab`."""
    with client_of(sta_lab, sta_lab.lab.headers) as client:
        yield client


@contextmanager
def serving_lab(url: str) -> Iterator[str]:
    """The service root of a real uvicorn serving the app on a free port."""
    port = free_port()
    settings = Settings(database_url=url, public_base_url=f"http://127.0.0.1:{port}")
    with serving(create_app(settings), port=port) as base:
        yield base + ROOT


@pytest.fixture
def sta_server(fresh_lab: StaLab) -> Iterator[str]:
    with serving_lab(fresh_lab.url) as root:
        yield root
