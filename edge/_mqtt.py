"""The agent's MQTT connection: paho-mqtt 2.x driven by our own network thread.

Why our own thread instead of ``loop_start()``: paho's thread reconnects with a
plain doubling delay; a fleet of gateways coming back after a broker restart must
spread out, so reconnects here use exponential backoff *with jitter*. The thread
uses paho's external-loop API (``socket`` / ``loop_read`` / ``loop_write`` /
``loop_misc``) and every paho call, from any thread, happens under one lock, which
is what makes ``publish`` from the agent thread safe.

Callbacks only hand work on: the watermark callback puts the payload into a bounded
queue (when it is full the payload is dropped and counted: a later watermark
supersedes it, and uncommitted packs are republished after the commit timeout);
the connect/disconnect callbacks only set the connection state and bump the
connection generation the agent watches.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import select
import ssl
import threading
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config import MqttConfig
from edge.errors import MqttLinkError

__all__ = ["MqttLink", "Will"]

log = logging.getLogger("edge.mqtt")

_OK = MQTTErrorCode.MQTT_ERR_SUCCESS


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class MqttLink:
    """One MQTT 5 client that keeps itself connected until :meth:`close`."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        client_id: str,
        will: Will,
        subscribe: str,
        watermark_queue_size: int = 1000,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.config = config
        self._subscribe_topic = subscribe
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._rng = random.Random()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.watermarks: queue.Queue[bytes] = queue.Queue(maxsize=watermark_queue_size)
        self.watermarks_dropped = 0
        self.connected = False
        self.generation = 0  # bumped at each successful CONNACK
        self.connects = 0
        self._had_session = False  # the last connection attempt got a CONNACK
        self._closing = False

        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
        )
        c.max_inflight_messages_set(max(1, config.max_inflight))
        if config.username is not None:
            c.username_pw_set(config.username, config.password)
        if config.tls:
            try:
                c.tls_set(ca_certs=str(config.ca_file) if config.ca_file else None)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise MqttLinkError(f"cannot set up TLS with CA file {config.ca_file}: {exc}") from exc
        c.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self._client = c
        self._thread = threading.Thread(target=self._run, name="edge-mqtt", daemon=True)

    # -- public -----------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        content_type: str | None = None,
    ) -> paho.MQTTMessageInfo | None:
        """Publish now if connected; ``None`` when not (the caller keeps the data)."""
        props = None
        if content_type is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = content_type
        with self._lock:
            if not self.connected:
                return None
            info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        self._wake()
        if info.rc != _OK:
            return None
        return info

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly (no will) and stop the network thread."""
        self._closing = True
        with self._lock:
            if self.connected:
                self._client.disconnect()
        self._wake()
        # let the thread flush the DISCONNECT, then stop it
        self._stop.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- network thread ----------------------------------------------------------
    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            if not self._connect():
                attempt += 1
                self._backoff(attempt)
                continue
            ok = True
            while ok and not self._stop.is_set():
                ok = self._service()
            if self._stop.is_set():
                self._drain_writes()
                break
            attempt = 0 if self._had_session else attempt + 1
            self._backoff(max(attempt, 1))
        with self._lock:
            self.connected = False

    def _connect(self) -> bool:
        self._had_session = False
        try:
            with self._lock:
                self._client.connect(self.config.host, self.config.port, keepalive=self.config.keepalive)
        except (OSError, ValueError) as exc:
            log.warning("cannot connect to %s: %s", self.config.url, exc)
            return False
        return True

    def _service(self) -> bool:
        """One select round; False when the connection is gone."""
        sock = self._client.socket()
        if sock is None:
            return False
        try:
            wlist = [sock] if self._client.want_write() else []
            r, w, _ = select.select([sock, self._wake_r], wlist, [], 1.0)
        except (OSError, ValueError):
            return False
        if self._wake_r in r:
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass
        with self._lock:
            rc = _OK
            if sock in r:
                rc = self._client.loop_read()
            if rc == _OK and (w or self._client.want_write()):
                rc = self._client.loop_write()
            if rc == _OK:
                rc = self._client.loop_misc()
        return rc == _OK

    def _drain_writes(self) -> None:
        for _ in range(20):
            with self._lock:
                if self._client.socket() is None or not self._client.want_write():
                    return
                self._client.loop_write()

    def _backoff(self, attempt: int) -> None:
        delay = min(self._backoff_max_s, self._backoff_min_s * 2 ** min(attempt - 1, 16))
        delay *= self._rng.uniform(0.5, 1.5)  # jitter: gateways must not reconnect in lockstep
        self._stop.wait(delay)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass

    # -- paho callbacks (network thread, under the lock): hand work on only --------
    def _on_connect(self, client: paho.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.error("broker %s refused the connection: %s", self.config.url, reason)
            return
        self._had_session = True
        self.connected = True
        self.generation += 1
        self.connects += 1
        log.info("connected to %s", self.config.url)
        # subscribing here is the canonical paho pattern: it only queues a packet
        client.subscribe(self._subscribe_topic, qos=1)

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        was = self.connected
        self.connected = False
        if self._closing:
            log.info("disconnected from %s", self.config.url)
        elif was:
            log.warning("disconnected from %s: %s", self.config.url, reason)

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        try:
            self.watermarks.put_nowait(bytes(message.payload))
        except queue.Full:
            self.watermarks_dropped += 1
