"""Mosquitto's dynamic-security plugin, driven by citylab.broker_security, with real MQTT clients.

A device publishes only under its own prefix and subscribes only to its own
committed and down topics; a disabled device cannot connect (and is
disconnected); a rotated password stops working; anonymous clients are refused.
"""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as paho
import pytest
from broker_lab import SecuredBroker
from paho.mqtt.enums import CallbackAPIVersion

from citylab.broker_security import BrokerSecurityError, DynSec

pytestmark = pytest.mark.slow


class Client:
    """A real MQTT 5 client that records connects, disconnects, subscription results and messages."""

    def __init__(self, broker: SecuredBroker, username: str | None, password: str | None,
                 client_id: str | None = None) -> None:
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"t-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connected = threading.Event()
        self.refused = threading.Event()
        self.gone = threading.Event()
        self.subscribed = threading.Event()
        self.granted: list[bool] = []
        self.messages: list[tuple[str, bytes]] = []
        self.got_message = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, reason, p: self.gone.set()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(broker.server.host, broker.server.port)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        (self.refused if reason.is_failure else self.connected).set()

    def _on_subscribe(self, client, userdata, mid, reasons, props) -> None:
        self.granted = [not r.is_failure for r in reasons]
        self.subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        self.messages.append((message.topic, message.payload))
        self.got_message.set()

    def wait_connected(self) -> bool:
        """True when accepted, False when refused."""
        for _ in range(100):
            if self.connected.wait(0.1):
                return True
            if self.refused.is_set():
                return False
        raise AssertionError("no CONNACK")

    def subscribe(self, topic: str) -> bool:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(10)
        return self.granted[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def dynsec(secured_broker: SecuredBroker) -> DynSec:
    return secured_broker.dynsec()


def test_anonymous_clients_are_refused(secured_broker: SecuredBroker) -> None:
    client = Client(secured_broker, None, None)
    try:
        assert client.wait_connected() is False
    finally:
        client.close()


def test_a_device_publishes_and_subscribes_only_under_its_prefix(secured_broker: SecuredBroker, dynsec: DynSec,
                                                                  org: str) -> None:
    a = dynsec.create_device(org, "dev-a")
    b = dynsec.create_device(org, "dev-b")
    watcher_creds = dynsec.create_device(org, "watch")
    # a privileged witness: ingest's role sees every lab topic
    witness_id = dynsec.create_ingest(f"ingest-{org}", "witness-password")
    witness = Client(secured_broker, f"ingest-{org}", "witness-password", witness_id)
    device_a = Client(secured_broker, a.username, a.password, a.client_id)
    device_b = Client(secured_broker, b.username, b.password, b.client_id)
    try:
        assert witness.wait_connected() and device_a.wait_connected() and device_b.wait_connected()
        assert witness.subscribe(f"lab/{org}/#")
        # subscriptions: own committed and down only
        assert device_a.subscribe(f"lab/{org}/dev-a/committed")
        assert device_a.subscribe(f"lab/{org}/dev-a/down")
        assert not device_a.subscribe(f"lab/{org}/dev-b/committed")
        assert not device_a.subscribe(f"lab/{org}/#")
        assert not device_a.subscribe("#")
        # publishing under B's prefix is dropped by the broker; under its own it arrives
        device_a.client.publish(f"lab/{org}/dev-b/up", b"forged", qos=1).wait_for_publish(10)
        device_a.client.publish(f"lab/{org}/dev-a/up", b"mine", qos=1).wait_for_publish(10)
        assert witness.got_message.wait(10)
        device_b.client.publish(f"lab/{org}/dev-b/up", b"b-own", qos=1).wait_for_publish(10)
        for _ in range(100):
            if len(witness.messages) >= 2:
                break
            witness.got_message.clear()
            witness.got_message.wait(0.1)
        assert (f"lab/{org}/dev-a/up", b"mine") in witness.messages
        assert (f"lab/{org}/dev-b/up", b"b-own") in witness.messages
        assert b"forged" not in [payload for _, payload in witness.messages]
    finally:
        for c in (witness, device_a, device_b):
            c.close()
    assert watcher_creds.username == f"{org}.watch"


def test_disabled_device_is_disconnected_and_cannot_connect(secured_broker: SecuredBroker, dynsec: DynSec,
                                                            org: str) -> None:
    creds = dynsec.create_device(org, "dev-x")
    device = Client(secured_broker, creds.username, creds.password, creds.client_id)
    try:
        assert device.wait_connected()
        dynsec.disable_client(creds.username)
        assert device.gone.wait(10), "the broker did not disconnect the disabled device"
    finally:
        device.close()
    again = Client(secured_broker, creds.username, creds.password, creds.client_id)
    try:
        assert again.wait_connected() is False
    finally:
        again.close()
    dynsec.enable_client(creds.username)
    back = Client(secured_broker, creds.username, creds.password, creds.client_id)
    try:
        assert back.wait_connected()
    finally:
        back.close()


def test_rotated_password_stops_working(secured_broker: SecuredBroker, dynsec: DynSec, org: str) -> None:
    creds = dynsec.create_device(org, "dev-r")
    connected = Client(secured_broker, creds.username, creds.password, creds.client_id)
    try:
        assert connected.wait_connected()
        new_password = dynsec.set_password(creds.username)
        assert connected.gone.wait(10), "the broker kept the old session after the rotation"
    finally:
        connected.close()
    old = Client(secured_broker, creds.username, creds.password, creds.client_id)
    new = Client(secured_broker, creds.username, new_password, creds.client_id)
    try:
        assert old.wait_connected() is False
        assert new.wait_connected() is True
    finally:
        old.close()
        new.close()


def test_wrong_admin_password_is_a_broker_security_error(secured_broker: SecuredBroker) -> None:
    with pytest.raises(BrokerSecurityError, match="refused"):
        DynSec(secured_broker.url, username="citylab-admin", password="wrong", timeout_s=5).run(
            [{"command": "listClients"}])
