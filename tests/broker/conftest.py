"""Fixtures of the broker tests: a Mosquitto with the dynamic-security plugin."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from citylab.broker_security import DynSec
from citylab.embedded import MosquittoServer, start_mosquitto

ADMIN = "citylab-admin"


@dataclass
class SecuredBroker:
    server: MosquittoServer
    admin_password: str

    @property
    def url(self) -> str:
        return self.server.url

    def dynsec(self) -> DynSec:
        return DynSec(self.url, username=ADMIN, password=self.admin_password)


@pytest.fixture(scope="session")
def secured_broker(services_dir: Path) -> Iterator[SecuredBroker]:
    password = secrets.token_urlsafe(16)
    server = start_mosquitto(services_dir, dynsec=(ADMIN, password), name="mosquitto-secured")
    yield SecuredBroker(server, password)
    server.stop()
