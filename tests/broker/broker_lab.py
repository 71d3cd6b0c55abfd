"""The broker tests' Mosquitto with the dynamic-security plugin, as its fixture hands it over
(a module of its own: test modules import it by a name no other directory's conftest has)."""

from __future__ import annotations

from dataclasses import dataclass

from citylab.broker_security import DynSec
from citylab.embedded import MosquittoServer

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
