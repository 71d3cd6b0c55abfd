"""The platform's MQTT entry: a persistent QoS 1 session that acknowledges after commit.

Why paho-mqtt here and not aiomqtt: the delivery guarantee needs the PUBACK of a
message to wait until the database transaction holding its rows has committed.
paho-mqtt 2.x supports exactly that (`manual_ack=True` and `Client.ack()`);
aiomqtt (2.5) acknowledges as soon as a message is handed over and offers no
public way to defer it. So ingest keeps paho's network thread and bridges it to
the writer with a bounded queue.

The callbacks only hand work on. `on_message` puts the message into a bounded
queue. Ingest's MQTT 5 receive maximum is that queue's bound, so the broker never
has more unacknowledged messages out to ingest than the queue holds: while the
database is slow the broker keeps the rest of the session queued (backpressure)
and the put never waits. Should it wait anyway, the waits are counted and nothing
is dropped. `connected` is set once the broker has granted the subscriptions
(SUBACK), not at CONNACK: before that, a publish could miss the session.
Every message is tagged with the connection it arrived on: a message id is only
meaningful on its own connection, so messages from an earlier connection are
stored (the broker redelivers them, and the pack claims de-duplicate) but never
acknowledged on a later one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest.errors import BrokerError
from ingest.message import Message
from protocol.topics import INGEST_FILTERS, STA_FEED_PROPERTY, Watermark, committed_topic, encode_watermark

__all__ = ["BrokerAddress", "IngestClient", "end_session", "parse_mqtt_url"]

logger = logging.getLogger("citylab.ingest.mqtt")

SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None


def parse_mqtt_url(url: str) -> BrokerAddress:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise BrokerError(f"MQTT URL {url!r}: scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise BrokerError(f"MQTT URL {url!r} names no host")
    tls = parts.scheme in ("mqtts", "ssl")
    return BrokerAddress(parts.hostname, parts.port or (8883 if tls else 1883), tls, parts.username, parts.password)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A received message and the connection it came on."""

    message: Message
    connection: int


class IngestClient:
    def __init__(self, url: str, *, client_id: str, queue_max: int,
                 filters: tuple[str, ...] = INGEST_FILTERS) -> None:
        self.address = parse_mqtt_url(url)
        self.filters = filters
        self.queue: queue.Queue[Delivery] = queue.Queue(maxsize=queue_max)
        self.connection = 0          # bumped on every successful connect
        self.connected = threading.Event()  # set once the subscriptions are granted
        self.queue_full_waits = 0
        self.refused_subscriptions: dict[str, str] = {}  # filter -> SUBACK reason of the last refusal
        self.receive_maximum = max(1, min(65535, queue_max))
        self.on_delivery: Callable[[], None] = lambda: None  # counts deliveries (metrics)
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
            protocol=paho.MQTTv5, manual_ack=True,
        )
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        self._subscribe_mid: int | None = None

    # -- paho's network thread ---------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.error("broker refused the connection: %s", reason_code)
            return
        self.connection += 1
        # No Local: the SensorThings feed this connection publishes never comes back to it
        # (MQTT 5 forbids it on a shared subscription)
        _, self._subscribe_mid = client.subscribe([
            (f, SubscribeOptions(qos=1, noLocal=not f.startswith("$share/"))) for f in self.filters])
        logger.info("connected to %s:%d (session present: %s)", self.address.host, self.address.port,
                    flags.session_present)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid != self._subscribe_mid:
            return
        refused = {f: str(code) for f, code in zip(self.filters, reason_codes) if code.is_failure}
        self.refused_subscriptions = refused
        if refused:
            # never "connected": nothing would arrive on those filters; ingest's status says why
            logger.error("broker refused subscriptions (SUBACK): %s",
                         ", ".join(f"{f}: {code}" for f, code in refused.items()))
            return
        logger.info("subscribed to %s", ", ".join(self.filters))
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        logger.warning("disconnected from the broker: %s", reason_code)

    def _on_message(self, client, userdata, msg: paho.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        if msg.qos == 0 and STA_FEED_PROPERTY in (getattr(props, "UserProperty", None) or ()):
            # citylab's own SensorThings feed (another process's, always QoS 0): nothing to store or
            # acknowledge; a QoS 1 message, whatever it carries, is a device's and goes on
            return
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # kept, and dead-lettered as a bad topic by the pipeline
            topic = msg._topic.decode("utf-8", "replace")
        delivery = Delivery(
            Message(
                topic=topic, payload=bytes(msg.payload), mid=msg.mid, qos=msg.qos,
                content_type=getattr(props, "ContentType", None), received_us=time.time_ns() // 1000,
            ),
            self.connection,
        )
        self.on_delivery()
        try:
            self.queue.put_nowait(delivery)
        except queue.Full:
            self.queue_full_waits += 1
            self.queue.put(delivery)  # backpressure: see the module docstring

    # -- the writer's side -------------------------------------------------------------
    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = self.receive_maximum
        self._client.connect_async(
            self.address.host, self.address.port, keepalive=30, clean_start=False, properties=props
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, deliveries: list[Delivery]) -> int:
        """PUBACK, in arrival order, the deliveries of the current connection; returns how many."""
        current = self.connection
        acked = 0
        for delivery in deliveries:
            if delivery.connection == current and delivery.message.qos > 0:
                self._client.ack(delivery.message.mid, delivery.message.qos)
                acked += 1
        return acked

    @property
    def paho(self) -> paho.Client:
        """The connection itself, for the SensorThings feed (ingest.observation_feed), which
        publishes QoS 0 on it from a thread of its own."""
        return self._client

    def publish_retained(self, topic: str, payload: bytes) -> bool:
        """Publish a retained QoS 1 message (alarm states); False when it could not be queued."""
        return self._client.publish(topic, payload, qos=1, retain=True).rc == 0

    def publish_watermark(self, org: str, device: str, watermark: Watermark) -> None:
        self._client.publish(committed_topic(org, device), encode_watermark(watermark), qos=1, retain=True)


def end_session(url: str, client_id: str, *, timeout_s: float = 10.0) -> bool:
    """End the persistent session of `client_id` (and its subscriptions): connect with a clean
    start and session expiry 0, then disconnect. False when the broker refused or did not answer."""
    address = parse_mqtt_url(url)
    answered = threading.Event()
    accepted: list[bool] = []

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        accepted.append(not reason_code.is_failure)
        answered.set()

    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=paho.MQTTv5)
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set()
    client.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    try:
        client.connect(address.host, address.port, keepalive=30, clean_start=True, properties=props)
    except OSError as exc:
        logger.warning("cannot end the session of %s: %s", client_id, exc)
        return False
    client.loop_start()
    try:
        answered.wait(timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()
    return bool(accepted and accepted[0])
