"""Helpers of the testbed tests: organisations with keys, a dynsec broker, clients, broker logins."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from citylab.embedded import MosquittoServer, start_mosquitto
from storage.tenants import create_key, create_org

DYNSEC_ADMIN = "citylab-admin"


@dataclass(frozen=True)
class Tenant:
    org_id: int
    slug: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_tenant(url: str, *, name: str, kind: str, role: str = "admin", slug: str | None = None) -> Tenant:
    with psycopg.connect(url, autocommit=True) as conn:
        org = create_org(conn, name=name, kind=kind, slug=slug)
        _, key = create_key(conn, org_id=org.id, role=role)
    return Tenant(org.id, org.slug, key)


def add_key(url: str, tenant: Tenant, role: str) -> Tenant:
    with psycopg.connect(url, autocommit=True) as conn:
        _, key = create_key(conn, org_id=tenant.org_id, role=role)
    return Tenant(tenant.org_id, tenant.slug, key)


@dataclass
class DynsecBroker:
    server: MosquittoServer
    admin_password: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port


@contextmanager
def dynsec_broker(root: Path) -> Iterator[DynsecBroker]:
    password = secrets.token_urlsafe(16)
    server = start_mosquitto(root, dynsec=(DYNSEC_ADMIN, password), name="mosquitto-dynsec")
    try:
        yield DynsecBroker(server, password)
    finally:
        server.stop()


def broker_accepts(host: str, port: int, username: str, password: str, client_id: str) -> bool:
    """Whether the broker accepts this login under this client id (a successful CONNACK)."""
    answered = threading.Event()
    codes: list = []

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        codes.append(reason_code)
        answered.set()

    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.username_pw_set(username, password)
    client.on_connect = on_connect
    client.connect(host, port)
    client.loop_start()
    try:
        if not answered.wait(10):
            raise AssertionError("no CONNACK")
    finally:
        client.disconnect()
        client.loop_stop()
    return not codes[0].is_failure
