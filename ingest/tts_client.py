"""Ingest's clients of network servers' own MQTT servers: The Things Stack v3, subscribed to.

The Things Stack's MQTT server is subscribe-only (MQTT 3.1.1, QoS 0), so a TTS
integration in mode `subscribe` has ingest connect *to it*, one client per
integration, with the integration's username (`{app}@{tenant}`) and API key:

    poller thread ── every `poll_s`: the enabled subscribe-mode integrations (storage)
       │              start a client for each new one; stop the disabled, deleted, changed
       ▼
    ServerClient ── paho, MQTT 3.1.1, clean session, TLS for mqtts://
       │             subscribes the integration's own topics (`integration_filters`: uplinks,
       │             `location/solved`) at QoS 0
       └─ on_message: the message, as received, into ingest's bounded queue (the same
                      pipeline, counters and dead letters as the broker's messages)

QoS 0 is all the server offers: there is nothing to acknowledge, and an uplink the
server sent while ingest was away is not sent again (its Storage Integration keeps
them for a backfill). The pipeline de-duplicates by reception time, so the same
application also bridged to citylab's broker, or subscribed by several workers, is
stored once. A refused CONNACK (a wrong API key) or SUBACK (a key without the right
to the application's traffic), and a server that does not answer (until it does), are
logged and kept in `refused()`: the metric `citylab_subscription_refused` and `/health`
name it. A message on a topic outside
the integration's own filters is logged, counted and not taken: one organisation's
server cannot speak for another's application.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ingest.errors import BrokerError
from ingest.message import Message
from ingest.mqtt import Delivery, parse_mqtt_url
from storage import connect
from storage.errors import StorageError
from storage.integrations import ServerLogin, integration_filters, load_server_logins

__all__ = ["ServerClient", "SubscribedServers"]

logger = logging.getLogger("citylab.ingest.tts")

NOT_ACKNOWLEDGED = -1  # the connection of a QoS 0 delivery: never matches one of ingest's own


class ServerClient:
    """One integration's connection to its network server's MQTT server."""

    def __init__(self, login: ServerLogin, deliver: Callable[[Delivery], bool]) -> None:
        found = login.integration
        self.login = login
        self.server = f"integration-{found.id}"
        self.filters = integration_filters(found.kind, found.application_id, found.tenant_id)
        self.refused: dict[str, str] = {}   # filter -> reason of the last refusal
        self.foreign_topics = 0             # messages outside the integration's filters, not taken
        self.connected = threading.Event()  # set once every subscription is granted
        self._deliver = deliver
        address = parse_mqtt_url(found.server_url or "")
        self.address = address
        client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311,
                             client_id=f"citylab-{found.id}-{secrets.token_hex(4)}", clean_session=True)
        client.username_pw_set(found.server_username, login.api_key)
        if address.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        self._subscribe_mid: int | None = None

    # -- paho's network thread ---------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.refused = {}   # reachable again: the CONNACK and the SUBACK say what holds now
        if reason_code.is_failure:
            self.refused = {f: f"connection refused: {reason_code}" for f in self.filters}
            logger.error("%s: %s:%d refused the connection as %s: %s", self.server, self.address.host,
                         self.address.port, self.login.integration.server_username, reason_code)
            return
        _, self._subscribe_mid = client.subscribe([(f, 0) for f in self.filters])

    def _on_connect_fail(self, client, userdata) -> None:
        # Counted as a refusal of every filter, so that /health names the server, until it answers.
        self.refused = {f: f"unreachable: {self.address.host}:{self.address.port} does not answer"
                        for f in self.filters}
        logger.warning("%s: cannot reach %s:%d; retrying", self.server, self.address.host, self.address.port)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid != self._subscribe_mid:
            return
        self.refused = {f: str(code) for f, code in zip(self.filters, reason_codes) if code.is_failure}
        if self.refused:
            logger.error("%s: %s:%d refused subscriptions (SUBACK): %s", self.server, self.address.host,
                         self.address.port, ", ".join(f"{f}: {c}" for f, c in self.refused.items()))
            return
        logger.info("%s: subscribed to %s on %s:%d", self.server, ", ".join(self.filters), self.address.host,
                    self.address.port)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set():
            logger.warning("%s: disconnected from %s:%d: %s", self.server, self.address.host, self.address.port,
                           reason_code)
        self.connected.clear()

    def _on_message(self, client, userdata, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = None
        if topic is None or not any(paho.topic_matches_sub(f, topic) for f in self.filters):
            self.foreign_topics += 1
            logger.warning("%s: not taken: a message on %r, outside the integration's topics", self.server, topic)
            return
        self._deliver(Delivery(Message(topic=topic, payload=bytes(msg.payload), mid=0, qos=0, content_type=None,
                                       received_us=time.time_ns() // 1000), NOT_ACKNOWLEDGED))

    # -- the poller's side ---------------------------------------------------------------
    def start(self) -> None:
        self._client.connect_async(self.address.host, self.address.port, keepalive=60)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()


class SubscribedServers:
    """Every enabled subscribe-mode integration's client, kept in step with the database."""

    def __init__(self, database_url: str, deliveries: queue.Queue[Delivery], *, poll_s: float = 2.0,
                 on_delivery: Callable[[], None] = lambda: None) -> None:
        self.database_url = database_url
        self.poll_s = poll_s
        self.clients: dict[int, ServerClient] = {}
        self._queue = deliveries
        self._on_delivery = on_delivery
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="citylab-tts-servers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            for client in self.clients.values():
                client.stop()
            self.clients.clear()

    def refused(self) -> dict[tuple[str, str], str]:
        """(server, filter) -> reason, of every refused connection or subscription."""
        with self._lock:
            return {(c.server, f): reason for c in self.clients.values() for f, reason in c.refused.items()}

    def sync(self, logins: list[ServerLogin]) -> None:
        """Start, stop or restart clients so that exactly `logins` run."""
        wanted = {login.integration.id: login for login in logins}
        with self._lock:
            for integration_id in list(self.clients):
                client = self.clients[integration_id]
                if wanted.get(integration_id) != client.login:
                    client.stop()
                    del self.clients[integration_id]
                    logger.info("%s: stopped (disabled, deleted or changed)", client.server)
            for integration_id, login in wanted.items():
                if integration_id not in self.clients:
                    try:
                        client = ServerClient(login, self._put)
                    except BrokerError as exc:
                        logger.error("integration-%d: not connected: %s", integration_id, exc)
                        continue
                    self.clients[integration_id] = client
                    client.start()

    def _put(self, delivery: Delivery) -> bool:
        """Into ingest's queue; while it is full the server's connection waits (TCP backpressure)."""
        self._on_delivery()
        while not self._stop.is_set():
            try:
                self._queue.put(delivery, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = connect(self.database_url, autocommit=True, application_name="citylab-ingest-tts")
                self.sync(load_server_logins(conn))
            except StorageError as exc:
                logger.warning("subscribed integrations: the database does not answer, retrying: %s", exc)
                if conn is not None:
                    conn.close()
                conn = None
            self._stop.wait(self.poll_s)
        if conn is not None:
            conn.close()
