"""Broker credentials and ACLs through Mosquitto's dynamic-security plugin.

The plugin is driven over MQTT: commands are published as JSON on
`$CONTROL/dynamic-security/v1` by a client with the plugin's admin role, and
answered on `$CONTROL/dynamic-security/v1/response`. `DynSec` sends a batch
of commands and waits for its answers (matched by `correlationData`); one
short-lived connection per batch keeps it simple and thread-safe.

Each device gets its own client (username `<org>.<device>`) and role:

    publishClientSend  lab/<org>/<device>/#           its own prefix, nothing else
    subscribeLiteral   lab/<org>/<device>/committed   its watermark
    subscribeLiteral   lab/<org>/<device>/down        downlinks

Everything else is denied by the plugin's default ACL access (publish and
subscribe denied). `disable_client` disconnects the device at once, and
`set_password` invalidates the old password (the plugin kicks the client).

`write_initial_config` writes the plugin's configuration file with its admin
client (what `mosquitto_ctrl dynsec init` does), so that no extra tool is
needed to start a secured broker.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

__all__ = [
    "CONTROL_TOPIC",
    "DYNSEC_PLUGIN",
    "BrokerSecurityError",
    "DeviceCredentials",
    "DynSec",
    "device_acls",
    "device_username",
    "new_password",
    "write_initial_config",
]

logger = logging.getLogger("citylab.broker_security")

DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
INGEST_ROLE = "citylab-ingest"
_ITERATIONS = 101  # what mosquitto_ctrl uses


class BrokerSecurityError(RuntimeError):
    """The broker could not be reached, or refused a dynamic-security command."""


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    username: str
    password: str


def new_password() -> str:
    return secrets.token_urlsafe(24)


def device_username(org: str, device: str) -> str:
    return f"{org}.{device}"


def device_role(org: str, device: str) -> str:
    return f"device:{org}:{device}"


def device_acls(org: str, device: str) -> list[dict[str, Any]]:
    prefix = f"lab/{org}/{device}"
    return [
        {"acltype": "publishClientSend", "topic": f"{prefix}/#", "allow": True},
        {"acltype": "subscribeLiteral", "topic": f"{prefix}/committed", "allow": True},
        {"acltype": "subscribeLiteral", "topic": f"{prefix}/down", "allow": True},
        {"acltype": "unsubscribeLiteral", "topic": f"{prefix}/committed", "allow": True},
        {"acltype": "unsubscribeLiteral", "topic": f"{prefix}/down", "allow": True},
    ]


def _hash(password: str, salt: bytes, iterations: int) -> str:
    return base64.b64encode(hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)).decode()


def write_initial_config(path: Path, *, admin_username: str, admin_password: str) -> None:
    """The plugin's configuration file with one admin client (allowed only to drive the plugin)."""
    salt = secrets.token_bytes(12)
    admin_acls = [
        {"acltype": kind, "topic": "$CONTROL/dynamic-security/#", "allow": True}
        for kind in ("publishClientSend", "publishClientReceive", "subscribePattern", "unsubscribePattern")
    ]
    config = {
        "clients": [{
            "username": admin_username, "textName": "citylab broker administration",
            "password": _hash(admin_password, salt, _ITERATIONS), "salt": base64.b64encode(salt).decode(),
            "iterations": _ITERATIONS, "roles": [{"rolename": "admin"}],
        }],
        "roles": [{"rolename": "admin", "acls": admin_acls}],
        "defaultACLAccess": {
            "publishClientSend": False, "publishClientReceive": True, "subscribe": False, "unsubscribe": True,
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


def url_with_credentials(url: str, username: str, password: str) -> str:
    """mqtt://host:port -> mqtt://username:password@host:port."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


class DynSec:
    """Sends dynamic-security commands to the broker at `url` as its admin client."""

    def __init__(self, url: str, *, username: str, password: str, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 1883
        self.username = username
        self.password = password
        self.timeout_s = timeout_s
        self._lock = threading.Lock()

    # -- device clients -----------------------------------------------------------

    def create_device(self, org: str, device: str) -> DeviceCredentials:
        """A client and role for the device, with a new password (replacing earlier ones)."""
        username, role = device_username(org, device), device_role(org, device)
        password = new_password()
        # Idempotent: delete what a half-finished earlier attempt may have left.
        self.run([{"command": "deleteClient", "username": username},
                  {"command": "deleteRole", "rolename": role}], ignore_errors=True)
        commands: list[dict[str, Any]] = [{"command": "createRole", "rolename": role}]
        commands += [{"command": "addRoleACL", "rolename": role, "priority": 0, **acl} for acl in device_acls(org, device)]
        commands.append({"command": "createClient", "username": username, "password": password,
                         "textname": f"device {device} of {org}", "roles": [{"rolename": role}]})
        self.run(commands)
        return DeviceCredentials(username, password)

    def set_password(self, username: str) -> str:
        """Rotate: a new password; the old one stops working and the client is disconnected."""
        password = new_password()
        self.run([{"command": "setClientPassword", "username": username, "password": password},
                  {"command": "enableClient", "username": username}])
        return password

    def disable_client(self, username: str) -> None:
        """The client is disconnected and cannot connect until enabled again."""
        self.run([{"command": "disableClient", "username": username}])

    def enable_client(self, username: str) -> None:
        self.run([{"command": "enableClient", "username": username}])

    def create_service(self, username: str, password: str, *, acls: list[dict[str, Any]], role: str) -> None:
        """A platform service client (ingest) with its own role; replaces an earlier one."""
        self.run([{"command": "deleteClient", "username": username},
                  {"command": "deleteRole", "rolename": role}], ignore_errors=True)
        commands: list[dict[str, Any]] = [{"command": "createRole", "rolename": role}]
        commands += [{"command": "addRoleACL", "rolename": role, "priority": 0, **acl} for acl in acls]
        commands.append({"command": "createClient", "username": username, "password": password,
                         "roles": [{"rolename": role}]})
        self.run(commands)

    def create_ingest(self, username: str, password: str) -> None:
        """Ingest reads every pack of the lab and publishes the committed watermarks."""
        acls = [
            {"acltype": "subscribePattern", "topic": "lab/#", "allow": True},
            {"acltype": "subscribePattern", "topic": "$share/#", "allow": True},
            {"acltype": "publishClientSend", "topic": "lab/+/+/committed", "allow": True},
            {"acltype": "publishClientSend", "topic": "lab/+/+/down", "allow": True},
        ]
        self.create_service(username, password, acls=acls, role=INGEST_ROLE)

    # -- transport ------------------------------------------------------------------

    def run(self, commands: list[dict[str, Any]], *, ignore_errors: bool = False) -> list[dict[str, Any]]:
        """Send `commands` in one message; return the responses (in order).

        Raises BrokerSecurityError when the broker is unreachable, does not answer
        in time, or reports an error for a command (unless `ignore_errors`)."""
        tag = uuid.uuid4().hex
        for i, command in enumerate(commands):
            command["correlationData"] = f"{tag}-{i}"
        with self._lock:
            responses = self._exchange(commands, tag)
        if not ignore_errors:
            for command, response in zip(commands, responses):
                if response.get("error"):
                    raise BrokerSecurityError(f"broker refused {command['command']}: {response['error']}")
        return responses

    def _exchange(self, commands: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
        done = threading.Event()
        subscribed = threading.Event()
        answers: dict[str, dict[str, Any]] = {}
        failure: list[str] = []

        def on_connect(client: paho.Client, userdata: object, flags: object, reason: Any, props: object) -> None:
            if reason.is_failure:
                failure.append(f"connect refused: {reason}")
                done.set()
                return
            client.subscribe(RESPONSE_TOPIC, qos=1)

        def on_subscribe(client: paho.Client, userdata: object, mid: int, reasons: Any, props: object) -> None:
            if any(r.is_failure for r in reasons):
                failure.append(f"subscribe to {RESPONSE_TOPIC} refused")
                done.set()
                return
            subscribed.set()
            client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)

        def on_message(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
            try:
                body = json.loads(message.payload)
            except ValueError:
                return
            for response in body.get("responses", []):
                corr = str(response.get("correlationData", ""))
                if corr.startswith(tag):
                    answers[corr] = response
            if len(answers) >= len(commands):
                done.set()

        client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                             client_id=f"citylab-dynsec-{tag[:8]}", protocol=paho.MQTTv5)
        client.username_pw_set(self.username, self.password)
        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise BrokerSecurityError(f"broker at {self.host}:{self.port} unreachable: {exc}") from exc
        client.loop_start()
        try:
            if not done.wait(self.timeout_s):
                raise BrokerSecurityError(
                    f"no dynamic-security answer from {self.host}:{self.port} within {self.timeout_s:.0f} s "
                    f"(is the plugin loaded? subscribed: {subscribed.is_set()})")
        finally:
            client.disconnect()
            client.loop_stop()
        if failure:
            raise BrokerSecurityError(f"broker at {self.host}:{self.port}: {failure[0]}")
        return [answers.get(c["correlationData"], {}) for c in commands]
