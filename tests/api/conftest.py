"""Fixtures of the API tests: the seeded lab (see seeded_lab.py) and TestClients
over a real database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from seeded_lab import Lab, seed

from api import create_app
from citylab.settings import Settings


@pytest.fixture
def lab(database: str) -> Lab:
    return seed(database)


@pytest.fixture
def client(lab: Lab) -> Iterator[TestClient]:
    # the seeded lab stores 1-minute aggregates only
    with TestClient(create_app(Settings(database_url=lab.url, window_widths_s=(60,)))) as client:
        yield client


@pytest.fixture
def empty_client(database: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=database))) as client:
        yield client
