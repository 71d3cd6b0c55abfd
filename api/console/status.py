"""The gateway status listener: retained `lab/{org}/{device}/status` messages into
the `gateway_status` table (storage.console), for the console and Grafana.

When the broker runs the dynamic-security plugin (the API holds its admin
credentials), the listener first makes a broker client of its own whose role
may only subscribe to `lab/+/+/status`, and deletes it again on stop.

A gateway publishes its status (state, store-and-forward buffer depth, counters)
retained every few seconds, and the broker publishes its will `{"state":
"offline"}` when it vanishes. The paho callback only puts the message into a
bounded queue; a writer thread records it. When the queue is full the message is
dropped and counted (`dropped`): the next status of that gateway replaces it
anyway, as only the newest is kept.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import unquote, urlsplit

from psycopg_pool import ConnectionPool

from storage.console import record_gateway_status

__all__ = ["StatusListener", "parse_status"]

logger = logging.getLogger("citylab.api.console")

TOPIC = "lab/+/+/status"
QUEUE_MAX = 1000


@dataclass(frozen=True, slots=True)
class GatewayReport:
    org: str
    device: str
    state: str
    buffer_depth: int | None
    boot_id: str | None
    reported_at: datetime
    status: dict[str, object]


def parse_status(topic: str, payload: bytes, *, now: datetime) -> GatewayReport | None:
    """The report in a status message, or None when it is not one (logged)."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "lab" or parts[3] != "status":
        return None
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        logger.warning("status on %s is not JSON (%d bytes)", topic, len(payload))
        return None
    if not isinstance(body, dict) or not isinstance(body.get("state"), str):
        logger.warning("status on %s has no state", topic)
        return None
    at = now
    if isinstance(body.get("time"), (int, float)):
        at = datetime.fromtimestamp(float(body["time"]), tz=timezone.utc)
    depth = body.get("buffer_depth")
    boot = body.get("boot_id")
    return GatewayReport(parts[1], parts[2], body["state"][:32], int(depth) if isinstance(depth, int) else None,
                         boot if isinstance(boot, str) else None, at, body)


class StatusListener:
    """Subscribes to every gateway's status and records the newest of each.

    `dynsec_admin` (username, password) is the broker's dynamic-security admin;
    without it the listener connects with the credentials in `mqtt_url`, if any.
    """

    def __init__(self, mqtt_url: str, pool: ConnectionPool, *, dynsec_admin: tuple[str, str] | None = None) -> None:
        self.mqtt_url = mqtt_url
        self.pool = pool
        self.dynsec_admin = dynsec_admin
        self.client_id = f"citylab-console-{uuid.uuid4().hex}"  # its broker login is bound to it
        self._dynsec = None
        self.recorded = 0
        self.dropped = 0
        self.failed = 0
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=QUEUE_MAX)
        self._client = None
        self._writer: threading.Thread | None = None

    def start(self) -> None:
        import paho.mqtt.client as mqtt

        parts = urlsplit(self.mqtt_url)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        if self.dynsec_admin is not None:
            client.username_pw_set(self.client_id, self._broker_account())
        elif parts.username:
            client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        client.on_connect = lambda c, userdata, flags, reason, props: c.subscribe(TOPIC, qos=1)
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        self._writer = threading.Thread(target=self._write, name="console-status-writer", daemon=True)
        self._writer.start()
        client.connect_async(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=30)
        client.loop_start()
        self._client = client
        logger.info("status listener subscribing to %s", TOPIC)

    def _broker_account(self) -> str:
        """A broker client and role that may subscribe to the status topics only; its password."""
        from citylab.broker_security import DynSec, new_password

        username, password = self.dynsec_admin
        self._dynsec = DynSec(self.mqtt_url, username=username, password=password)
        secret = new_password()
        self._dynsec.create_service(self.client_id, secret, role=self.client_id, client_id=self.client_id, acls=[
            {"acltype": "subscribePattern", "topic": TOPIC, "allow": True},
        ])
        return secret

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(timeout=5)
        if self._dynsec is not None:
            try:
                self._dynsec.run([{"command": "deleteClient", "username": self.client_id},
                                  {"command": "deleteRole", "rolename": self.client_id}], ignore_errors=True)
            except Exception as exc:  # noqa: BLE001 - the broker may already be gone at shutdown
                logger.info("could not delete broker client %s: %s", self.client_id, exc)

    def _on_message(self, client, userdata, message) -> None:
        try:
            self._queue.put_nowait((message.topic, bytes(message.payload)))
        except queue.Full:
            self.dropped += 1
            logger.warning("status queue full: dropped status on %s (%d dropped)", message.topic, self.dropped)

    def _write(self) -> None:
        while (item := self._queue.get()) is not None:
            report = parse_status(*item, now=datetime.now(timezone.utc))
            if report is None:
                continue
            try:
                with self.pool.connection() as conn:
                    record_gateway_status(conn, device=report.device, org=report.org, state=report.state,
                                          buffer_depth=report.buffer_depth, boot_id=report.boot_id,
                                          reported_at=report.reported_at, status=report.status)
                self.recorded += 1
            except Exception as exc:  # noqa: BLE001 - keep listening whatever the database or pool says
                self.failed += 1
                logger.warning("could not record status of %s: %s", report.device, exc)
