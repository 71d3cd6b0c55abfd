"""Fixtures of the API tests: the seeded lab (see seeded_lab.py), TestClients over
a real database with the key of the seeded lab's organisation, and a Mosquitto
with the dynamic-security plugin (see testbed.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from seeded_lab import Lab, seed
from testbed import DYNSEC_ADMIN, DynsecBroker, Tenant, dynsec_broker, make_tenant

from api import create_app
from citylab.settings import Settings


@pytest.fixture
def lab(database: str) -> Lab:
    return seed(database)


@pytest.fixture
def lab_tenant(lab: Lab) -> Tenant:
    """The organisation of the seeded devices (slug `lab`), with an admin key."""
    return make_tenant(lab.url, name="Lab", kind="provider", slug="lab")


@pytest.fixture
def client(lab: Lab, lab_tenant: Tenant) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=lab.url)), headers=lab_tenant.headers) as client:
        yield client


@pytest.fixture
def empty_client(database: str) -> Iterator[TestClient]:
    tenant = make_tenant(database, name="Lab", kind="provider", slug="lab")
    with TestClient(create_app(Settings(database_url=database)), headers=tenant.headers) as client:
        yield client


@pytest.fixture(scope="session")
def dynsec(services_dir: Path) -> Iterator[DynsecBroker]:
    """A session Mosquitto with the dynamic-security plugin (anonymous clients refused)."""
    with dynsec_broker(services_dir) as broker:
        yield broker


@pytest.fixture
def testbed_settings(database: str, dynsec: DynsecBroker) -> Settings:
    return Settings(database_url=database, mqtt_url=dynsec.url, dynsec_username=DYNSEC_ADMIN,
                    dynsec_password=dynsec.admin_password)


@pytest.fixture
def testbed_app(testbed_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(testbed_settings)) as client:
        yield client
