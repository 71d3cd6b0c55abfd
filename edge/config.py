"""The agent's one TOML file, read into frozen dataclasses.

Relative paths (buffer, boot id file, CA file, serial ports) are relative to the
directory of the TOML file. See ``docs/edge.md`` and ``deploy/edge/example.toml``
for the schema; every mistake raises :class:`~edge.errors.ConfigError` naming the
file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.errors import ConfigError
from protocol.lpp import LPP_KINDS
from protocol.quantities import QUANTITIES
from protocol.senml import SENML_CBOR, SENML_JSON
from protocol.topics import up_topic

__all__ = [
    "BufferConfig",
    "EdgeConfig",
    "GatewayConfig",
    "LoraSourceConfig",
    "MqttConfig",
    "SerialSourceConfig",
    "load_config",
    "parse_config",
]

_CONTENT_TYPES = {"cbor": SENML_CBOR, "json": SENML_JSON}


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    org: str
    device: str
    boot_id_file: Path | None = None
    status_interval_s: float = 5.0


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    keepalive: int = 30
    client_id: str | None = None
    commit_timeout_s: float = 30.0
    max_inflight: int = 20

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class BufferConfig:
    path: Path
    max_packs: int = 100_000
    pack_max_readings: int = 100
    pack_max_age_ms: int = 500
    drain_rate_packs_per_s: float = 50.0


@dataclass(frozen=True, slots=True)
class SerialSourceConfig:
    path: str
    baud: int = 115200
    sensors: frozenset[str] | None = None  # allow-list; None admits every sensor id


@dataclass(frozen=True, slots=True)
class LoraSourceConfig:
    path: str
    baud: int = 115200
    nodes: tuple[tuple[int, str], ...] = ()  # radio address -> device id
    channels: tuple[tuple[int, str], ...] = ()  # LPP channel -> quantity

    def node_map(self) -> dict[int, str]:
        return dict(self.nodes)

    def channel_map(self) -> dict[int, str]:
        return dict(self.channels)


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    gateway: GatewayConfig
    mqtt: MqttConfig
    buffer: BufferConfig
    content_type: str = SENML_CBOR
    serial: tuple[SerialSourceConfig, ...] = ()
    lora: tuple[LoraSourceConfig, ...] = ()


def load_config(path: Path | str) -> EdgeConfig:
    """Read and validate the TOML file at ``path``."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("file not found", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(path)) from None
    return parse_config(data, base=path.parent, source=str(path))


class _Table:
    """Typed access to one TOML table that names the key in every error."""

    def __init__(self, data: Any, where: str, source: str | None) -> None:
        if not isinstance(data, dict):
            raise ConfigError("must be a table", path=source, key=where)
        self.data, self.where, self.source = data, where, source
        self._used: set[str] = set()

    def _err(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, path=self.source, key=f"{self.where}.{key}" if self.where else key)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, required: bool = False) -> Any:
        self._used.add(key)
        if key not in self.data:
            if required or default is ...:
                raise self._err(key, "is required")
            return default
        value = self.data[key]
        if kind in (int, float) and isinstance(value, bool):
            raise self._err(key, f"must be a number, not {value!r}")
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self._err(key, f"must be {names}, not {type(value).__name__} {value!r}")
        return value

    def positive(self, key: str, kind: type, default: Any) -> Any:
        value = self.get(key, kind, default)
        if value <= 0:
            raise self._err(key, f"must be > 0, not {value!r}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self._used)
        if unknown:
            raise self._err(unknown[0], f"unknown key (known: {', '.join(sorted(self._used))})")


def _path(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def parse_config(data: dict[str, Any], *, base: Path = Path("."), source: str | None = None) -> EdgeConfig:
    """Validate an already-parsed TOML document (``base`` anchors relative paths)."""
    root = _Table(data, "", source)

    gw = _Table(root.get("gateway", dict, required=True), "gateway", source)
    gateway = GatewayConfig(
        org=gw.get("org", str, required=True),
        device=gw.get("device", str, required=True),
        boot_id_file=_path(base, gw.get("boot_id_file", str, None)),
        status_interval_s=gw.positive("status_interval_s", float, 5.0),
    )
    gw.finish()
    try:  # org and device must be valid topic levels
        up_topic(gateway.org, gateway.device)
    except ValueError as exc:
        raise ConfigError(str(exc), path=source, key="gateway") from None

    mq = _Table(root.get("mqtt", dict, required=True), "mqtt", source)
    url = mq.get("url", str, required=True)
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(f"{url!r} is not mqtt://host[:port] or mqtts://host[:port]", path=source, key="mqtt.url")
    try:
        port_in_url = parts.port
    except ValueError:
        raise ConfigError(f"{url!r} has a bad port", path=source, key="mqtt.url") from None
    tls = mq.get("tls", bool, parts.scheme == "mqtts")
    if parts.scheme == "mqtts" and not tls:
        raise ConfigError("mqtts:// URL with tls = false", path=source, key="mqtt.tls")
    mqtt = MqttConfig(
        host=parts.hostname,
        port=port_in_url or (8883 if tls else 1883),
        tls=tls,
        username=mq.get("username", str, parts.username),
        password=mq.get("password", str, parts.password),
        ca_file=_path(base, mq.get("ca_file", str, None)),
        keepalive=mq.positive("keepalive", int, 30),
        client_id=mq.get("client_id", str, None),
        commit_timeout_s=mq.positive("commit_timeout_s", float, 30.0),
        max_inflight=mq.positive("max_inflight", int, 20),
    )
    mq.finish()

    bu = _Table(root.get("buffer", dict, required=True), "buffer", source)
    buffer = BufferConfig(
        path=_path(base, bu.get("path", str, required=True)),  # type: ignore[arg-type]
        max_packs=bu.positive("max_packs", int, 100_000),
        pack_max_readings=bu.positive("pack_max_readings", int, 100),
        pack_max_age_ms=bu.positive("pack_max_age_ms", int, 500),
        drain_rate_packs_per_s=bu.positive("drain_rate_packs_per_s", float, 50.0),
    )
    bu.finish()

    fm = _Table(root.get("format", dict, {}), "format", source)
    ct_name = fm.get("content_type", str, "cbor")
    if ct_name not in _CONTENT_TYPES:
        raise ConfigError(f"must be 'cbor' or 'json', not {ct_name!r}", path=source, key="format.content_type")
    fm.finish()

    serial = tuple(_serial(t, i, base, source) for i, t in enumerate(root.get("serial", list, [])))
    lora = tuple(_lora(t, i, base, source) for i, t in enumerate(root.get("lora", list, [])))
    if not serial and not lora:
        raise ConfigError("no source: add at least one [[serial]] or [[lora]] table", path=source)
    root.finish()
    return EdgeConfig(gateway, mqtt, buffer, _CONTENT_TYPES[ct_name], serial, lora)


def _serial(data: Any, i: int, base: Path, source: str | None) -> SerialSourceConfig:
    t = _Table(data, f"serial[{i}]", source)
    sensors = t.get("sensors", list, None)
    if sensors is not None and not all(isinstance(s, str) for s in sensors):
        raise ConfigError("must be a list of sensor ids", path=source, key=f"serial[{i}].sensors")
    cfg = SerialSourceConfig(
        path=str(_path(base, t.get("path", str, required=True))),
        baud=t.positive("baud", int, 115200),
        sensors=frozenset(sensors) if sensors is not None else None,
    )
    t.finish()
    return cfg


def _int_keys(table: _Table, key: str, *, what: str) -> dict[int, str]:
    raw = table.get(key, dict, {})
    out: dict[int, str] = {}
    for k, v in raw.items():
        if not k.isdigit() or not isinstance(v, str):
            raise ConfigError(
                f"entries must be \"<{what}>\" = \"<name>\", not {k!r} = {v!r}",
                path=table.source,
                key=f"{table.where}.{key}",
            )
        out[int(k)] = v
    return out


def _lora(data: Any, i: int, base: Path, source: str | None) -> LoraSourceConfig:
    t = _Table(data, f"lora[{i}]", source)
    nodes = _int_keys(t, "nodes", what="address")
    channels = _int_keys(t, "channels", what="channel")
    for ch, q in channels.items():
        if q not in QUANTITIES and q not in LPP_KINDS:
            raise ConfigError(
                f"channel {ch}: {q!r} is neither a citylab quantity nor an LPP kind",
                path=source,
                key=f"lora[{i}].channels",
            )
    if not nodes:
        raise ConfigError("needs at least one node (address = device id)", path=source, key=f"lora[{i}].nodes")
    cfg = LoraSourceConfig(
        path=str(_path(base, t.get("path", str, required=True))),
        baud=t.positive("baud", int, 115200),
        nodes=tuple(sorted(nodes.items())),
        channels=tuple(sorted(channels.items())),
    )
    t.finish()
    return cfg
