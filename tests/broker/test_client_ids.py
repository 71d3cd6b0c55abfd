"""Broker sessions belong to their logins: every login citylab makes is bound to its
client id, so a device cannot take over ingest's (or another device's) persistent
session. Real Mosquitto with dynamic security, real paho clients, real ingest and
PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as paho
import psycopg
import pytest
from broker_lab import ADMIN, SecuredBroker
from paho.mqtt.enums import CallbackAPIVersion

from citylab.broker_security import DynSec, ingest_client_id, new_password, url_with_credentials
from ingest import IngestOptions, IngestService
from lab_probes import wait
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import committed_topic, ingest_filters, up_topic
from storage.registry import register_device

pytestmark = pytest.mark.slow


class Session:
    """A real MQTT 5 client: was it accepted, which messages did it get, was it thrown out."""

    def __init__(self, broker: SecuredBroker, username: str, password: str, client_id: str, *,
                 clean_start: bool = False) -> None:
        self.accepted = threading.Event()
        self.refused = threading.Event()
        self.gone = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=paho.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, reason, p: (self.refused if reason.is_failure else self.accepted).set()
        self.client.on_disconnect = lambda c, u, f, reason, p: self.gone.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.connect(broker.server.host, broker.server.port, clean_start=clean_start)
        self.client.loop_start()

    def outcome(self) -> bool:
        """True when the broker accepted the session, False when it refused it."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.accepted.wait(0.05):
                return True
            if self.refused.is_set():
                return False
        raise AssertionError("no CONNACK")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _stored(url: str, org: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM readings r JOIN series s ON s.id = r.series_id"
                            " WHERE s.org = %s", (org,)).fetchone()[0]


def test_no_login_can_use_a_client_id_that_is_not_its_own(database: str, secured_broker: SecuredBroker,
                                                           org: str) -> None:
    dynsec = secured_broker.dynsec()
    other_org = f"{org}-b"
    a = dynsec.create_device(org, "dev-a")
    b = dynsec.create_device(org, "dev-b")
    c = dynsec.create_device(other_org, "dev-a")  # another organisation's device of the same name
    assert a.client_id == a.username == f"{org}.dev-a" and c.client_id == f"{other_org}.dev-a"
    ingest_user, ingest_password = f"ingest-{org}", new_password()
    ingest_id = dynsec.create_ingest(ingest_user, ingest_password)
    assert ingest_id == ingest_client_id(ingest_user, ingest_password) != ingest_user
    assert ingest_id != ingest_client_id(ingest_user, new_password())  # it takes the secret to know it
    console_id = f"citylab-console-{uuid.uuid4().hex}"
    dynsec.create_service(console_id, new_password(), acls=[], role=console_id, client_id=console_id)

    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="dev-a")
        conn.commit()
    service = IngestService(IngestOptions(
        database_url=database, mqtt_url=url_with_credentials(secured_broker.url, ingest_user, ingest_password),
        client_id=ingest_id, batch_max_age_ms=50, filters=ingest_filters(org)))
    stop = threading.Event()
    worker = threading.Thread(target=service.run, args=(stop,), daemon=True)
    worker.start()
    legit: list[Session] = []
    intruders: list[Session] = []
    try:
        assert service.client.connected.wait(20), "ingest did not connect with its bound client id"
        owner_b = Session(secured_broker, b.username, b.password, b.client_id)
        legit.append(owner_b)
        assert owner_b.outcome()
        # every client id device A's login should not be able to use, with and without a clean start:
        # each one the broker has bound to a login (asked of the broker itself), and a few more
        (listed,) = dynsec.run([{"command": "listClients", "verbose": True}])
        bound = {client["clientid"] for client in listed["data"]["clients"] if client.get("clientid")}
        assert {ingest_id, b.client_id, c.client_id, console_id, ADMIN} <= bound
        foreign = sorted(bound - {a.client_id}) + [
            "citylab-ingest", ingest_user, f"edge-{org}-dev-a", "", f"{a.client_id}x", a.client_id.upper()]
        for client_id in foreign:
            for clean in (False, True):
                intruder = Session(secured_broker, a.username, a.password, client_id, clean_start=clean)
                intruders.append(intruder)
                assert intruder.outcome() is False, f"device A was let in as {client_id!r}"
        # other logins may not use A's id either, nor ingest's
        for user, password, client_id in [(b.username, b.password, a.client_id),
                                          (c.username, c.password, a.client_id),
                                          (b.username, b.password, ingest_id),
                                          (ingest_user, ingest_password, a.client_id)]:
            intruder = Session(secured_broker, user, password, client_id)
            intruders.append(intruder)
            assert intruder.outcome() is False, f"{user} was let in as {client_id!r}"
        # the sessions they aimed at are untouched: ingest still connected, B still connected
        assert service.client.connected.is_set() and not owner_b.gone.is_set()

        # A with its own id publishes; ingest keeps storing and A gets its watermark
        owner_a = Session(secured_broker, a.username, a.password, a.client_id)
        legit.append(owner_a)
        assert owner_a.outcome()
        owner_a.client.subscribe(committed_topic(org, "dev-a"), qos=1)
        pack = encode_pack(Pack("boot-1", 0, (Record("dev-a/temperature", 21.5, time.time(), "Cel"),)))
        owner_a.client.publish(up_topic(org, "dev-a"), pack, qos=1).wait_for_publish(10)
        wait(lambda: _stored(database, org) == 1, 20, "the reading stored (ingest stopped storing)")
        wait(lambda: any(t == committed_topic(org, "dev-a") for t, _ in owner_a.messages), 20, "the commit watermark")
        # none of the refused sessions received anything
        assert all(not s.messages for s in intruders)
        assert service.client.connected.is_set()
    finally:
        for session in legit + intruders:
            session.close()
        stop.set()
        worker.join(15)


def test_the_admin_login_is_bound_and_exchanges_still_work(secured_broker: SecuredBroker, org: str) -> None:
    dynsec = secured_broker.dynsec()
    creds = dynsec.create_device(org, "dev-x")
    intruder = Session(secured_broker, creds.username, creds.password, ADMIN)
    try:
        assert intruder.outcome() is False
    finally:
        intruder.close()
    # the admin cannot connect under another id, and concurrent exchanges of two
    # admin clients in one process share the one client id without losing any
    stray = Session(secured_broker, ADMIN, secured_broker.admin_password, f"admin-{uuid.uuid4().hex[:6]}")
    try:
        assert stray.outcome() is False
    finally:
        stray.close()
    other = DynSec(secured_broker.url, username=ADMIN, password=secured_broker.admin_password)
    results: list[str] = []
    errors: list[Exception] = []

    def make(d: DynSec, name: str) -> None:
        try:
            results.append(d.create_device(org, name).username)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=make, args=(d, f"dev-{i}")) for i, d in enumerate([dynsec, other] * 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and sorted(results) == sorted(f"{org}.dev-{i}" for i in range(6))



def test_a_share_group_worker_takes_a_client_id_only_its_login_can_use(
        database: str, secured_broker: SecuredBroker, org: str) -> None:
    """`citylab ingest` in a share group, on a login shared by the group's workers:
    its client id is `<ingest_client_id>-<host>`, which a device cannot take over."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="dev-s")
        conn.commit()
    dynsec = secured_broker.dynsec()
    device = dynsec.create_device(org, "dev-s")
    user, password = f"ingest-{org}", new_password()
    worker_id = f"{dynsec.create_ingest(user, password, shared=True)}-{socket.gethostname()}"
    env = {**os.environ, "CITYLAB_DATABASE_URL": database,
           "CITYLAB_MQTT_URL": url_with_credentials(secured_broker.url, user, password),
           "CITYLAB_INGEST_SHARE_GROUP": f"g{org}", "CITYLAB_INGEST_ORG": org, "CITYLAB_INGEST_BATCH_MAX_AGE_MS": "50"}
    worker = subprocess.Popen([sys.executable, "-m", "citylab", "ingest"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    publisher = Session(secured_broker, device.username, device.password, device.client_id)
    intruder = None
    try:
        assert publisher.outcome()
        sent: list[Record] = []

        def publish_one() -> None:
            record = Record("dev-s/temperature", float(len(sent)), time.time(), "Cel")
            publisher.client.publish(up_topic(org, "dev-s"), encode_pack(Pack("boot-s", len(sent), (record,))),
                                     qos=1).wait_for_publish(10)
            sent.append(record)

        # a reading every 0.1 s until the worker has stored three
        wait(lambda: _stored(database, org) >= 3 or publish_one(), 60, "the worker to store three readings")
        assert _stored(database, org) >= 3, "the worker stores nothing"
        intruder = Session(secured_broker, device.username, device.password, worker_id)
        assert intruder.outcome() is False
        assert worker.poll() is None
    finally:
        publisher.close()
        if intruder is not None:
            intruder.close()
        worker.send_signal(signal.SIGTERM)
        out = worker.communicate(timeout=30)[0]
    assert out.count("connected to") == 1 and "taken over" not in out, out


def test_broker_bind_binds_logins_made_before_binding(database: str, secured_broker: SecuredBroker,
                                                      org: str) -> None:
    import os
    import subprocess
    import sys

    from storage.tenants import set_mqtt_username

    dynsec = secured_broker.dynsec()
    username, password = f"{org}.old-1", new_password()
    # a login as citylab made them before binding: no client id
    dynsec.run([{"command": "createClient", "username": username, "password": password}])
    loose = Session(secured_broker, username, password, "anything-goes")
    assert loose.outcome()
    loose.close()
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="old-1")
        set_mqtt_username(conn, org=org, device="old-1", username=username)
        conn.commit()
    env = {**os.environ, "CITYLAB_DATABASE_URL": database, "CITYLAB_MQTT_URL": secured_broker.url,
           "CITYLAB_DYNSEC_USERNAME": ADMIN, "CITYLAB_DYNSEC_PASSWORD": secured_broker.admin_password}
    done = subprocess.run([sys.executable, "-m", "citylab", "admin", "broker-bind"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "bound 1 device logins" in done.stdout, done.stdout + done.stderr
    for client_id, accepted in (("anything-goes", False), (username, True)):
        session = Session(secured_broker, username, password, client_id)
        try:
            assert session.outcome() is accepted, client_id
        finally:
            session.close()


def test_an_older_plugin_file_gets_its_admin_bound(services_dir) -> None:
    import json

    from citylab.broker_security import bind_admin_in_config, write_initial_config
    from citylab.embedded import start_mosquitto

    name = f"mosquitto-old-{uuid.uuid4().hex[:6]}"
    path = services_dir / name / "dynsec.json"
    password = new_password()
    write_initial_config(path, admin_username=ADMIN, admin_password=password)
    config = json.loads(path.read_text())
    del config["clients"][0]["clientid"]  # as citylab wrote it before logins were bound
    path.write_text(json.dumps(config))
    assert bind_admin_in_config(path, admin_username=ADMIN) is True
    assert bind_admin_in_config(path, admin_username=ADMIN) is False
    server = start_mosquitto(services_dir, dynsec=(ADMIN, password), name=name)
    broker = SecuredBroker(server, password)
    try:
        stray = Session(broker, ADMIN, password, "not-the-admin")
        try:
            assert stray.outcome() is False
        finally:
            stray.close()
        assert broker.dynsec().create_device("tolder", "d-1").client_id == "tolder.d-1"
    finally:
        server.stop()
