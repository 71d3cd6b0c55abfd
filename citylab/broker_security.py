"""Broker credentials and ACLs through Mosquitto's dynamic-security plugin.

The plugin is driven over MQTT: commands are published as JSON on
`$CONTROL/dynamic-security/v1` by a client with the plugin's admin role, and
answered on `$CONTROL/dynamic-security/v1/response`. `DynSec` sends a batch
of commands and waits for its answers (matched by `correlationData`); one
short-lived connection per batch keeps it simple and thread-safe.

Every login citylab creates is bound to its own MQTT client id (the plugin's
`clientid` of a client): the broker refuses the login under any other client
id. Since every login is bound, no login can take over another's session:

    device          username `<org>.<device>`, client id the same (org slugs hold no dot,
                    so the pair is unambiguous)
    ingest worker   client id `<username>-<HMAC of its password>` (`ingest_client_id`):
                    stable across restarts (its persistent session), not guessable;
                    a worker of a share group adds its host name (`share_client_id`):
                    either on a login the group shares (docker-compose's replicas), or on
                    a login of its own bound to that id (`citylab up --ingest-workers N`:
                    citylab-ingest-1 ... citylab-ingest-N)
    other services  (the console's status listener) a random client id
    admin           the plugin's admin: client id = its username (`write_initial_config`);
                    one exchange at a time per process, and an exchange whose
                    connection is taken over before it sent anything is retried

Each device gets its own client and role:

    publishClientSend  lab/<org>/<device>/#           its own prefix
    publishClientSend  v1.1/Datastreams(<id>)/Observations
                                                  each of its own series (SensorThings create via MQTT)
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
import hmac
import json
import logging
import random
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from protocol.topics import STA_CREATE_FILTER, observation_topic

__all__ = [
    "CONTROL_TOPIC",
    "DYNSEC_PLUGIN",
    "BrokerSecurityError",
    "bind_admin_in_config",
    "DeviceCredentials",
    "DynSec",
    "datastream_acls",
    "device_acls",
    "device_client_id",
    "device_username",
    "ingest_client_id",
    "new_password",
    "share_client_id",
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
    client_id: str   # the only MQTT client id the broker accepts for this login


def new_password() -> str:
    return secrets.token_urlsafe(24)


def device_username(org: str, device: str) -> str:
    """`<org>.<device>`: unique, since an organisation's slug holds no dot."""
    if "." in org:
        raise ValueError(f"organisation {org!r} holds a dot: its device usernames would be ambiguous")
    return f"{org}.{device}"


def device_client_id(org: str, device: str) -> str:
    """The client id a device's login is bound to: its username."""
    return device_username(org, device)


def ingest_client_id(username: str, password: str) -> str:
    """The client id ingest's login is bound to: derived from its password, so that it
    is the same at every start (ingest's persistent session) and guessable by nobody
    who does not hold the password."""
    tag = hmac.new(password.encode(), b"citylab-ingest-client-id:" + username.encode(), hashlib.sha256)
    return f"{username}-{tag.hexdigest()[:24]}"


def share_client_id(client_id: str) -> str:
    """The client id a worker of a share group takes: its own with the host name appended,
    so that the workers of one login on different hosts each keep a session of their own."""
    return f"{client_id}-{socket.gethostname()}"


def device_role(org: str, device: str) -> str:
    return f"device:{org}:{device}"


def datastream_acls(series_ids: Sequence[int]) -> list[dict[str, Any]]:
    """A device may create Observations of its own series over the SensorThings MQTT extension."""
    return [{"acltype": "publishClientSend", "topic": observation_topic(s), "allow": True} for s in series_ids]


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
            "username": admin_username, "clientid": admin_username, "textName": "citylab broker administration",
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


def bind_admin_in_config(path: Path, *, admin_username: str) -> bool:
    """Bind the admin client of a plugin file written before logins were bound to its
    client id (its username); only while the broker is stopped. True when it changed."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    changed = False
    for client in config.get("clients", []):
        if client.get("username") == admin_username and client.get("clientid") != admin_username:
            client["clientid"] = admin_username
            changed = True
    if changed:
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
    return changed


def url_with_credentials(url: str, username: str, password: str) -> str:
    """mqtt://host:port -> mqtt://username:password@host:port."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


_LOCKS: dict[tuple[str, int, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
_ATTEMPTS = 8


class _TakenOver(Exception):
    """The exchange's connection was closed before it published its commands."""


class DynSec:
    """Sends dynamic-security commands to the broker at `url` as its admin client."""

    def __init__(self, url: str, *, username: str, password: str, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 1883
        self.username = username
        self.password = password
        self.timeout_s = timeout_s
        # one exchange at a time per admin login in this process: they share one client id
        with _LOCKS_GUARD:
            self._lock = _LOCKS.setdefault((self.host, self.port, username), threading.Lock())

    # -- device clients -----------------------------------------------------------

    def create_device(self, org: str, device: str, *, datastreams: Sequence[int] = ()) -> DeviceCredentials:
        """A client and role for the device, with a new password (replacing earlier ones),
        bound to the client id `device_client_id(org, device)`; `datastreams`: its series."""
        username, role = device_username(org, device), device_role(org, device)
        client_id = device_client_id(org, device)
        password = new_password()
        # Idempotent: delete what a half-finished earlier attempt may have left.
        self.run([{"command": "deleteClient", "username": username},
                  {"command": "deleteRole", "rolename": role}], ignore_errors=True)
        commands: list[dict[str, Any]] = [{"command": "createRole", "rolename": role}]
        commands += [{"command": "addRoleACL", "rolename": role, "priority": 0, **acl}
                     for acl in device_acls(org, device) + datastream_acls(datastreams)]
        commands.append({"command": "createClient", "username": username, "password": password,
                         "clientid": client_id, "textname": f"device {device} of {org}",
                         "roles": [{"rolename": role}]})
        self.run(commands)
        return DeviceCredentials(username, password, client_id)

    def allow_datastreams(self, org: str, device: str, series_ids: Sequence[int]) -> None:
        """Add the SensorThings create topics of `series_ids` to the device's role (one it
        already has is left as it is)."""
        if series_ids:
            self.run([{"command": "addRoleACL", "rolename": device_role(org, device), "priority": 0, **acl}
                      for acl in datastream_acls(series_ids)], ignore_errors=True)

    def set_password(self, username: str, *, client_id: str | None = None) -> str:
        """Rotate: a new password; the old one stops working and the client is disconnected.
        With `client_id`, the login is (re)bound to it as well (logins made before binding)."""
        password = new_password()
        commands: list[dict[str, Any]] = [{"command": "setClientPassword", "username": username, "password": password}]
        if client_id is not None:
            commands.append({"command": "setClientId", "username": username, "clientid": client_id})
        commands.append({"command": "enableClient", "username": username})
        self.run(commands)
        return password

    def bind_client_ids(self, bindings: dict[str, str]) -> None:
        """Bind existing logins (username -> client id), e.g. devices onboarded before
        logins were bound; a bound client is disconnected and must reconnect with its id."""
        commands = [{"command": "setClientId", "username": u, "clientid": c} for u, c in bindings.items()]
        for start in range(0, len(commands), 100):
            self.run(commands[start:start + 100])

    def disable_client(self, username: str) -> None:
        """The client is disconnected and cannot connect until enabled again."""
        self.run([{"command": "disableClient", "username": username}])

    def enable_client(self, username: str) -> None:
        self.run([{"command": "enableClient", "username": username}])

    def create_service(self, username: str, password: str, *, acls: list[dict[str, Any]], role: str,
                       client_id: str | None) -> None:
        """A platform service client with its own role, bound to `client_id` (None: a login
        shared by workers, see `create_ingest`); replaces an earlier one."""
        self.run([{"command": "deleteClient", "username": username},
                  {"command": "deleteRole", "rolename": role}], ignore_errors=True)
        commands: list[dict[str, Any]] = [{"command": "createRole", "rolename": role}]
        commands += [{"command": "addRoleACL", "rolename": role, "priority": 0, **acl} for acl in acls]
        binding = {"clientid": client_id} if client_id is not None else {}
        commands.append({"command": "createClient", "username": username, "password": password,
                         "roles": [{"rolename": role}], **binding})
        self.run(commands)

    def create_ingest(self, username: str, password: str, *, shared: bool = False,
                      share_group: bool = False) -> str:
        """Ingest reads every pack of the lab and publishes the committed watermarks.

        Returns the client id the login is bound to (`ingest_client_id`): ingest
        must connect with it. A login `shared` by the workers of a share group is
        not bound to one id: each worker connects as `<that id>-<host>`, which
        needs the password to know, and which no other login can take, since
        every other login citylab makes is bound to its own id. The login of one
        `share_group` worker alone is bound to the id that worker takes
        (`share_client_id`)."""
        acls = [
            {"acltype": "subscribePattern", "topic": "lab/#", "allow": True},
            {"acltype": "subscribePattern", "topic": "$share/#", "allow": True},
            # LoRaWAN integrations' uplinks (each integration's login publishes on its own family only)
            {"acltype": "subscribePattern", "topic": "v3/+/devices/+/up", "allow": True},
            {"acltype": "subscribePattern", "topic": "application/+/device/+/event/up", "allow": True},
            {"acltype": "subscribePattern", "topic": "v3/+/devices/+/location/solved", "allow": True},
            {"acltype": "subscribePattern", "topic": "application/+/device/+/event/status", "allow": True},
            {"acltype": "subscribePattern", "topic": "application/+/device/+/event/location", "allow": True},
            {"acltype": "publishClientSend", "topic": "lab/+/+/committed", "allow": True},
            {"acltype": "publishClientSend", "topic": "lab/+/alarms/+", "allow": True},  # retained alarm states
            {"acltype": "publishClientSend", "topic": "lab/+/+/down", "allow": True},
            {"acltype": "publishClientSend", "topic": "v1.1/#", "allow": True},   # committed Observations (STA MQTT)
            {"acltype": "subscribePattern", "topic": STA_CREATE_FILTER, "allow": True},  # created over STA MQTT
        ]
        client_id = ingest_client_id(username, password)
        if share_group:
            client_id = share_client_id(client_id)
        self.create_service(username, password, acls=acls, role=f"{INGEST_ROLE}:{username}",
                            client_id=None if shared else client_id)
        return client_id

    # -- transport ------------------------------------------------------------------

    def run(self, commands: list[dict[str, Any]], *, ignore_errors: bool = False) -> list[dict[str, Any]]:
        """Send `commands` in one message; return the responses (in order).

        Raises BrokerSecurityError when the broker is unreachable, does not answer
        in time, or reports an error for a command (unless `ignore_errors`)."""
        tag = uuid.uuid4().hex
        for i, command in enumerate(commands):
            command["correlationData"] = f"{tag}-{i}"
        with self._lock:
            for attempt in range(_ATTEMPTS):
                try:
                    responses = self._exchange(commands, tag)
                    break
                except _TakenOver:
                    # another process's exchange took the admin's client id over: nothing
                    # was sent, so trying again is safe
                    if attempt == _ATTEMPTS - 1:
                        raise BrokerSecurityError(f"broker at {self.host}:{self.port}: the admin's session "
                                                  f"was taken over {_ATTEMPTS} times") from None
                    time.sleep(random.uniform(0.05, 0.3) * (attempt + 1))
        if not ignore_errors:
            for command, response in zip(commands, responses):
                if response.get("error"):
                    raise BrokerSecurityError(f"broker refused {command['command']}: {response['error']}")
        return responses

    def _exchange(self, commands: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
        done = threading.Event()
        subscribed = threading.Event()
        published = threading.Event()
        lost: list[bool] = []
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
            published.set()
            client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)

        def on_disconnect(client: paho.Client, userdata: object, flags: object, reason: Any, props: object) -> None:
            if not done.is_set():
                lost.append(published.is_set())
                failure.append(f"connection closed during the exchange: {reason}")
                done.set()
            client.disconnect()  # no automatic reconnect: it would take the session back

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

        client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=self.username,
                             protocol=paho.MQTTv5)
        client.username_pw_set(self.username, self.password)
        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
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
        if lost and not lost[0] and len(answers) < len(commands):
            raise _TakenOver()
        if failure:
            raise BrokerSecurityError(f"broker at {self.host}:{self.port}: {failure[0]}")
        return [answers.get(c["correlationData"], {}) for c in commands]
