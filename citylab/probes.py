"""Is each part of the lab up? One probe per component, shared by `/health`, `/metrics`
and `citylab status`.

    database  a round trip to PostgreSQL (the caller supplies it: the API probes through its pool)
    broker    an MQTT CONNECT answered by a CONNACK, whatever its reason code: a broker
              that refuses an anonymous probe is up
    ingest    its Prometheus endpoint answers; its lag (`citylab_ingest_lag_seconds`) and
              broker connection (`citylab_broker_connected`) are read from it when it has them;
              a subscription refused by the broker or by a network server ingest subscribes to
              (`citylab_subscription_refused`) makes it down, naming the filter and the reason;
              several workers (`citylab up --ingest-workers N`) are ingest-1 ... ingest-N, each a
              core component of its own

A probe never raises: it returns a `ComponentHealth` saying up or down and why.
"""

from __future__ import annotations

import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["CORE", "ComponentHealth", "add_supervised", "healthy", "is_core", "probe_broker", "probe_ingest"]

PROBE_TIMEOUT_S = 2.0

# the components whose absence makes the lab unhealthy (503), with every ingest worker
# `ingest-<n>` (is_core); the demo's simulators and edge agents are listed, but do not count
CORE = frozenset({"database", "broker", "ingest", "api"})
# the supervisor's names for the servers it runs, and the component each one is
SUPERVISED_AS = {"postgres": "database", "mosquitto": "broker"}

# MQTT 3.1.1 CONNECT: clean session, keep-alive 10 s, empty client id (section 3.1)
_CONNECT = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 10, 0, 0])
_DISCONNECT = bytes([0xE0, 0])


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    name: str
    up: bool
    detail: str | None = None
    lag_seconds: float | None = None
    broker_connected: bool | None = None
    refused_subscriptions: tuple[dict[str, str], ...] = ()  # {"server", "filter", "reason"}

    def public(self) -> dict:
        out: dict = {"up": self.up}
        if self.detail:
            out["detail"] = self.detail
        if _is_ingest(self.name):
            out["lag_seconds"] = self.lag_seconds
            out["broker_connected"] = self.broker_connected
        if self.refused_subscriptions:
            out["refused_subscriptions"] = [dict(r) for r in self.refused_subscriptions]
        return out


def probe_broker(mqtt_url: str, *, timeout: float = PROBE_TIMEOUT_S) -> ComponentHealth:
    parts = urlsplit(mqtt_url)
    tls = parts.scheme in ("mqtts", "ssl")
    host, port = parts.hostname or "localhost", parts.port or (8883 if tls else 1883)
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sock = ssl.create_default_context().wrap_socket(raw, server_hostname=host) if tls else raw
            sock.sendall(_CONNECT)
            answer = _read_exactly(sock, 4, deadline=time.monotonic() + timeout)
            if answer[0] != 0x20:
                return ComponentHealth("broker", False, f"no CONNACK from {host}:{port}")
            if answer[3] == 0:
                sock.sendall(_DISCONNECT)
    except (OSError, ssl.SSLError) as exc:
        return ComponentHealth("broker", False, f"{host}:{port}: {exc.strerror or exc}")
    return ComponentHealth("broker", True)


def _read_exactly(sock: socket.socket, size: int, *, deadline: float) -> bytes:
    data = b""
    while len(data) < size:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed before answering")
        data += chunk
    return data


def is_core(name: str) -> bool:
    return name in CORE or _is_ingest(name)


def _is_ingest(name: str) -> bool:
    """`ingest`, or one worker of several: `ingest-1`, `ingest-2`, ..."""
    return name == "ingest" or (name.startswith("ingest-") and name[len("ingest-"):].isdigit())


def probe_ingest(metrics_url: str, *, timeout: float = PROBE_TIMEOUT_S, name: str = "ingest") -> ComponentHealth:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout) as response:  # noqa: S310 - our own setting
            text = response.read().decode()
    except (OSError, urllib.error.URLError) as exc:
        return ComponentHealth(name, False, f"its metrics at {metrics_url} do not answer: "
                                                f"{getattr(exc, 'reason', exc)}")
    values: dict[str, float] = {}
    refused: list[dict[str, str]] = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values.setdefault(sample.name, sample.value)
                if sample.name == "citylab_subscription_refused" and sample.value:
                    refused.append({k: sample.labels.get(k, "") for k in ("server", "filter", "reason")})
    except ValueError as exc:
        return ComponentHealth(name, False, f"unreadable metrics at {metrics_url}: {exc}")
    lag = values.get("citylab_ingest_lag_seconds")
    connected = values.get("citylab_broker_connected")
    connected_flag = None if connected is None else connected >= 1
    if refused:
        named = "; ".join(f"{r['server']} refused {r['filter']}: {r['reason']}" for r in refused)
        return ComponentHealth(name, False, f"subscriptions refused ({named})", lag_seconds=lag,
                               broker_connected=connected_flag, refused_subscriptions=tuple(refused))
    if connected_flag is False:
        return ComponentHealth(name, False, f"{name} runs but is not connected to the broker",
                               lag_seconds=lag, broker_connected=False)
    return ComponentHealth(name, True, lag_seconds=lag, broker_connected=connected_flag)


def add_supervised(components: dict[str, dict], snapshot: dict[str, dict] | None) -> dict[str, dict]:
    """Add to the probed `components` what the supervisor says (`citylab.supervisor.read_snapshot`):
    the processes nobody probed, and every one's restart count. A probe's verdict wins."""
    for name, state in (snapshot or {}).items():
        entry = components.setdefault(SUPERVISED_AS.get(name, name), {"up": bool(state.get("up"))})
        entry["restarts"] = int(state.get("restarts", 0))
    return components


def healthy(components: dict[str, dict]) -> bool:
    return all(entry.get("up") for name, entry in components.items() if is_core(name))
