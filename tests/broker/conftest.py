"""Fixtures of the broker tests: a Mosquitto with the dynamic-security plugin."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker_lab import ADMIN, SecuredBroker

from citylab.embedded import start_mosquitto


@pytest.fixture(scope="session")
def secured_broker(services_dir: Path) -> Iterator[SecuredBroker]:
    password = secrets.token_urlsafe(16)
    server = start_mosquitto(services_dir, dynsec=(ADMIN, password), name="mosquitto-secured")
    yield SecuredBroker(server, password)
    server.stop()
