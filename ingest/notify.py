"""Delivery of alarm notifications from the outbox (storage.alarms): webhooks and e-mail.

A notification is queued in the transaction that changes its alarm, one per state change and
channel, so it leaves only after that commit, and a dispatcher that was killed finds it still
pending when it restarts. ``Dispatcher.run_once`` claims the due ones (locked: a second
dispatcher skips them) and tries each once:

* **webhook**: ``POST`` of the JSON payload with ``X-Citylab-Delivery`` (the notification id,
  the same on every retry, so receivers can drop a repeat), ``X-Citylab-Timestamp`` (Unix
  seconds) and ``X-Citylab-Signature: sha256=<hex>``, the HMAC-SHA256 with the channel's secret
  over ``"<timestamp>.<body>"``; a 2xx answer is a delivery;
* **smtp**: one e-mail to the channel's recipient through its SMTP server;
* **mqtt**: the alarm's state, retained, on ``lab/{org}/alarms/{alarm id}`` (the channel's
  target), through ingest's own broker session (``publish``), so a subscriber sees the current
  state of every alarm as soon as it subscribes.

Every try is recorded (``notification_attempts``). A failed one is retried after
``backoff_s · 2^(tries − 1)`` seconds; after ``max_attempts`` the notification is dead, with
its attempts as the reason. Addresses users give (webhook hosts, SMTP servers) are resolved
first and refused when any address is loopback, link-local, private or otherwise not global,
unless allowed (``allow_loopback`` for the embedded lab and tests, ``allow_private``), and the
connection goes to the addresses checked, never to a second answer of the resolver
(``citylab.outbound``); requests time out after ``timeout_s``, follow no redirect and read at
most ``max_response`` bytes of an answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage

import psycopg

from citylab import outbound
from citylab.outbound import OutboundError, OutboundPolicy, OutboundRefused
from storage.alarms import Channel, Notification, claim_due, record_attempt
from storage.errors import StorageError

__all__ = ["Dispatcher", "GuardError", "check_address", "sign", "start_dispatcher"]

logger = logging.getLogger("citylab.notify")

SIGNATURE_HEADER = "X-Citylab-Signature"
TIMESTAMP_HEADER = "X-Citylab-Timestamp"
DELIVERY_HEADER = "X-Citylab-Delivery"


GuardError = OutboundRefused  # an outbound address refused by the SSRF guard


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: ``sha256=`` + hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def check_address(host: str, port: int, *, allow_loopback: bool, allow_private: bool) -> None:
    """Refuse `host` unless every address it resolves to is allowed (GuardError); the lab's one guard."""
    outbound.check_address(host, port, OutboundPolicy(allow_loopback=allow_loopback, allow_private=allow_private))


@dataclass
class Dispatcher:
    connect: Callable[[], psycopg.Connection]  # a new (non-autocommit) database connection
    allow_loopback: bool = False
    allow_private: bool = False
    timeout_s: float = 5.0
    max_response: int = 64 * 1024
    max_attempts: int = 5
    backoff_s: float = 2.0
    sender: str = "citylab@localhost"
    publish: Callable[[str, bytes], bool] | None = None  # retained MQTT publish; None: no broker

    @property
    def _policy(self) -> OutboundPolicy:
        return OutboundPolicy(allow_loopback=self.allow_loopback, allow_private=self.allow_private,
                              timeout_s=self.timeout_s, max_bytes=self.max_response)

    def run_once(self, limit: int = 100) -> dict[str, int]:
        """Try every due notification once; counts of the statuses they ended in."""
        counts = {"delivered": 0, "pending": 0, "dead": 0}
        tried: list[int] = []
        with self.connect() as conn:
            for _ in range(limit):
                with conn.transaction():  # the row stays locked while it is being delivered
                    due = claim_due(conn, limit=1, exclude=tried)
                    if not due:
                        break
                    note = due[0]
                    tried.append(note.id)
                    ok, detail = self._deliver(note)
                    tries = note.attempts + 1
                    retry = None if ok or tries >= self.max_attempts else self.backoff_s * 2 ** (tries - 1)
                    counts[record_attempt(conn, note.id, ok=ok, detail=detail, retry_in_s=retry)] += 1
        return counts

    def _deliver(self, note: Notification) -> tuple[bool, str]:
        try:
            if note.channel.kind == "webhook":
                return self._webhook(note)
            if note.channel.kind == "mqtt":
                return self._mqtt(note)
            return self._smtp(note)
        except GuardError as exc:
            return False, f"refused: {exc}"
        except OutboundError as exc:
            return False, str(exc)
        except (OSError, smtplib.SMTPException) as exc:
            return False, f"{type(exc).__name__}: {exc}"

    def _webhook(self, note: Notification) -> tuple[bool, str]:
        body = json.dumps({"id": note.id, **note.payload}, sort_keys=True, default=str).encode()
        ts = int(time.time())
        headers = {
            "Content-Type": "application/json", DELIVERY_HEADER: str(note.id), TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(note.channel.secret or "", ts, body), "User-Agent": "citylab-alarms",
        }
        answer = outbound.request("POST", note.channel.target, self._policy, content=body, headers=headers)
        return 200 <= answer.status < 300, f"HTTP {answer.status}"  # an answer is read, never more than the limit

    def _mqtt(self, note: Notification) -> tuple[bool, str]:
        if self.publish is None:
            return False, "no broker session to publish on"
        topic = f"{note.channel.target}/{note.alarm_id}"
        body = json.dumps({"id": note.id, **note.payload}, sort_keys=True, default=str).encode()
        return (True, f"published {topic}") if self.publish(topic, body) else (False, f"publish {topic} failed")

    def _smtp(self, note: Notification) -> tuple[bool, str]:
        channel: Channel = note.channel
        host, port = channel.smtp_host or "", int(channel.smtp_port or 25)
        p = note.payload
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = channel.target
        message["Subject"] = f"[citylab] {p.get('severity', '')} alarm {p.get('rule')}: {note.state}"
        message["Message-ID"] = f"<notification-{note.id}@citylab>"
        message.set_content(json.dumps({"id": note.id, **p}, indent=2, sort_keys=True, default=str))
        with outbound.connect_smtp(host, port, self._policy) as smtp:   # to the address checked
            refused = smtp.send_message(message)
        if refused:
            return False, f"SMTP refused {sorted(refused)}"
        return True, "SMTP accepted"


def start_dispatcher(database_url: str, stop: threading.Event, *, interval_s: float = 1.0,
                     **options) -> threading.Thread:
    """Deliver due notifications every `interval_s` seconds in a daemon thread until `stop`."""
    from storage.db import connect

    dispatcher = Dispatcher(lambda: connect(database_url, application_name="citylab-notify"), **options)

    def loop() -> None:
        while not stop.is_set():
            try:
                dispatcher.run_once()
            except (StorageError, psycopg.Error) as exc:  # the database is away: the outbox waits for it
                logger.warning("notifications: %s; retrying", exc)
            stop.wait(interval_s)

    thread = threading.Thread(target=loop, name="citylab-notify", daemon=True)
    thread.start()
    return thread
