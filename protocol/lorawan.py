"""Uplinks bridged from LoRaWAN network servers: The Things Stack v3 and ChirpStack v4.

Both publish one JSON document per uplink on their MQTT integration::

    v3/{application id}[@{tenant id}]/devices/{device id}/up       The Things Stack v3
    application/{application id}/device/{dev eui}/event/up          ChirpStack v4

:func:`decode_uplink` turns one into an :class:`Uplink`: the device's DevEUI
(16 uppercase hex digits, the key to the citylab registry), the frame
counter and port, the network server's reception time, and readings
``(quantity, unit, value)``. The readings come from the network server's
decoded payload when there is one (``uplink_message.decoded_payload``,
``object``), else from the raw frame payload (``frm_payload``, ``data``)
decoded as Cayenne LPP. Pure functions, no I/O; every failure is a
:class:`LoRaWANError`. The mapping is documented in ``docs/protocol.md``,
section 6.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from protocol.errors import LppError, ProtocolError
from protocol.lpp import LPP_KINDS, decode_lpp
from protocol.quantities import QUANTITIES
from protocol.units import UNITS

__all__ = [
    "LORAWAN_FILTERS",
    "LoRaWANError",
    "Uplink",
    "decode_uplink",
    "dedup_key",
    "lorawan_event",
    "lorawan_network",
]

TTS = "tts"
CHIRPSTACK = "chirpstack"

#: What ingest subscribes to when LoRaWAN bridging is enabled: uplinks, then status and location events.
LORAWAN_FILTERS: tuple[str, ...] = (
    "v3/+/devices/+/up", "application/+/device/+/event/up",
    "v3/+/devices/+/location/solved", "application/+/device/+/event/status",
    "application/+/device/+/event/location",
)

_EARLIEST = 946_684_800.0  # 2000-01-01T00:00:00Z: a reception time before is a broken clock
_LATEST = 4_102_444_800.0  # 2100-01-01T00:00:00Z
_MAX_DEPTH = 3  # levels of nested objects flattened in a decoded payload; deeper is skipped
_QUANTITY = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # what a series quantity may be (SenML name part)
_DEV_EUI = re.compile(r"[0-9A-Fa-f]{16}")
_CHANNEL_KEY = re.compile(r"(.+)_(\d{1,3})")
# A decoded-payload string holding a number and its unit ("3.384 V", "30.11 °C").
_NUMBER_WITH_UNIT = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\s\d].*?)?\s*")
# SenML unit names, and the symbols people write for them ("°C" -> "Cel", "µg/m³" -> "ug/m3").
_UNIT_SPELLINGS: dict[str, str] = {
    **{u.symbol: u.senml for u in UNITS.values() if u.symbol not in ("1", "%")},
    **{name: name for name in UNITS},
    "%": "%", "C": "Cel", "degC": "Cel", "ug/m3": "ug/m3",
}
_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?(Z|z|[+-]\d{2}:\d{2})"
)

# Units of the keys written by the Cayenne LPP payload formatter of The Things
# Stack ("{sensor}_{channel}", lorawan-stack pkg/messageprocessors/cayennelpp),
# by extended LPP decoders (same names as citylab's LPP kinds) and by custom
# formatters that use citylab quantity names.
_CAYENNE_UNITS: dict[str, str | None] = {
    **LPP_KINDS,
    "digital_in": None,
    "digital_out": None,
    "analog_in": None,
    "analog_out": None,
    "luminosity": "lx",
    "presence": None,
    "temperature": "Cel",
    "relative_humidity": "%RH",
    "accelerometer": None,  # G; no SenML unit
    "barometric_pressure": "hPa",
    "gyrometer": None,  # deg/s; no SenML unit
    "gps": None,
}
_AXIS_UNITS: dict[str, dict[str, str | None]] = {
    "gps": {"latitude": "lat", "longitude": "lon", "altitude": "m"},
    "accelerometer": {"x": None, "y": None, "z": None},
    "gyrometer": {"x": None, "y": None, "z": None},
}

# ChirpStack's built-in Cayenne LPP codec writes {"temperatureSensor": {"3": 27.2}}
# (chirpstack/src/codec/cayenne_lpp.rs); renamed to The Things Stack's
# "temperature_3" so that both network servers give the same quantities.
_CHIRPSTACK_CAYENNE: dict[str, str] = {
    "digitalInput": "digital_in",
    "digitalOutput": "digital_out",
    "analogInput": "analog_in",
    "analogOutput": "analog_out",
    "illuminanceSensor": "luminosity",
    "presenceSensor": "presence",
    "temperatureSensor": "temperature",
    "humiditySensor": "relative_humidity",
    "accelerometer": "accelerometer",
    "barometer": "barometric_pressure",
    "gyrometer": "gyrometer",
    "gpsLocation": "gps",
}

# Raw LPP kinds that are one axis of a multi-value type: the suffix kept after a
# channel-map name ("accelerometer_x" on a channel named "tilt" -> "tilt_x").
_LPP_AXES: dict[str, str] = {
    kind: kind.split("_", 1)[1]
    for kind in LPP_KINDS
    if kind.startswith(("accelerometer_", "gyrometer_", "gps_"))
}


class LoRaWANError(ProtocolError):
    """A network-server uplink that cannot be decoded.

    ``reason``: ``"undecodable"`` (not JSON, not an object, or a raw payload
    that is not Cayenne LPP), ``"bad_uplink"`` (a required field missing or of
    the wrong type, or a topic that is not an uplink topic), ``"no_payload"``
    (neither a decoded payload nor raw bytes), ``"bad_dev_eui"`` (a DevEUI
    that is not 16 hex digits, or that differs from the topic's).
    """


@dataclass(frozen=True, slots=True)
class Uplink:
    """One uplink as citylab stores it.

    ``received_at`` is absolute UTC seconds: when the network server received
    the uplink (The Things Stack: ``uplink_message.received_at``; ChirpStack:
    ``time``). ``f_cnt`` and ``f_port`` are 0 when absent: both servers omit
    zero-valued fields from their JSON. ``skipped`` counts decoded-payload
    values that are not numbers (booleans, strings, null, lists, non-finite
    or too deep) or whose key is not a valid quantity name.
    """

    network: str  # "tts" | "chirpstack"
    dev_eui: str  # 16 uppercase hex digits
    f_cnt: int
    f_port: int
    received_at: float
    readings: tuple[tuple[str, str | None, float], ...]  # (quantity, unit, value)
    skipped: int = 0
    source: str = "decoded"  # "decoded" (network server's payload formatter) | "lpp" (raw frame)
    device_name: str | None = None  # The Things Stack device_id / ChirpStack deviceName
    uplink_id: str | None = None  # ChirpStack deduplicationId / The Things Stack "as:up:..." id
    received_us: int = 0  # received_at in exact integer microseconds (RFC 3339 nanoseconds rounded half-even)
    event: str = "up"  # "up" | "status" (battery, link margin) | "location" (a solved position)
    simulated: bool = False  # The Things Stack "simulated": true (an uplink sent from its console)


def lorawan_network(topic: str) -> str | None:
    """``"tts"`` or ``"chirpstack"`` when ``topic`` is one of that network server's topics citylab
    reads (uplinks, status and location events), else None."""
    found = lorawan_event(topic)
    return found[0] if found is not None else None


def lorawan_event(topic: str) -> tuple[str, str] | None:
    """(network, event) of a network server's topic: event "up", "status" or "location"."""
    parts = topic.split("/")
    if parts[0] == "v3" and len(parts) in (5, 6) and parts[2] == "devices" and parts[1] and parts[3]:
        if len(parts) == 5 and parts[4] == "up":
            return TTS, "up"
        if len(parts) == 6 and parts[4:] == ["location", "solved"]:
            return TTS, "location"
        return None
    if (
        len(parts) == 6
        and parts[0] == "application"
        and parts[2] == "device"
        and parts[4] == "event"
        and parts[5] in ("up", "status", "location")
        and parts[1] and parts[3]
    ):
        return CHIRPSTACK, parts[5]
    return None


def dedup_key(uplink: Uplink) -> tuple[str, int]:
    """``(boot_id, seq)`` under which ingest de-duplicates this uplink.

    ``seq`` is the network server's reception time in integer microseconds,
    not the frame counter: ``f_cnt`` restarts at 0 when a device rejoins (or
    an ABP device reboots), and a key on it would drop the new session's
    readings as duplicates. A redelivered message carries the same reception
    time, so it maps to the same key; two distinct uplinks of one device are
    never received in the same microsecond (LoRa airtime alone is > 1 ms).
    """
    boot = f"lorawan:{uplink.network}" if uplink.event == "up" else f"lorawan:{uplink.network}:{uplink.event}"
    return boot, uplink.received_us or round(uplink.received_at * 1_000_000)


def decode_uplink(topic: str, payload: bytes, *, channels: Mapping[int, str] | None = None) -> Uplink:
    """Decode one uplink published on ``topic`` by a network server's MQTT integration.

    ``channels`` maps Cayenne LPP channels to citylab quantities (the device's
    channel map in the registry); it names readings from raw LPP frames and
    from Cayenne keys of decoded payloads (``temperature_3``). Unmapped raw
    LPP values are named ``"{kind}_{channel}"``.
    """
    network = lorawan_network(topic)
    if network is None:
        raise LoRaWANError(
            "bad_uplink",
            f"topic {topic!r} is neither a The Things Stack v3 uplink topic "
            "(v3/{app}/devices/{device}/up) nor a ChirpStack v4 one "
            "(application/{app}/device/{dev eui}/event/up)",
        )
    doc = _load(payload)
    segments = topic.split("/")
    event = lorawan_event(topic)[1]  # type: ignore[index]
    if event == "location":
        return _location(network, doc, segments[3])
    if event == "status":
        return _status(doc, segments[3])
    if network == TTS:
        return _tts(doc, segments[3], channels or {})
    return _chirpstack(doc, segments[3], channels or {})


# -- status and location events -----------------------------------------------

_POSITION = (("latitude", "lat", -90.0, 90.0), ("longitude", "lon", -180.0, 180.0), ("altitude", "m", -1e4, 1e5))


def _location(network: str, doc: dict[str, Any], topic_device: str) -> Uplink:
    """TTS ``location_solved`` / ChirpStack ``location`` event: latitude, longitude, altitude."""
    if network == TTS:
        ids = _object(doc, "end_device_ids", "end_device_ids")
        dev_eui = _dev_eui(ids.get("dev_eui"), "end_device_ids.dev_eui")
        solved = _object(doc, "location_solved", "location_solved")
        where = _object(solved, "location", "location_solved.location")
        received_us = _time_us(doc.get("received_at"), "received_at")
    else:
        dev_eui = _chirpstack_eui(doc, topic_device)
        where = _object(doc, "location", "location")
        received_us = _time_us(doc.get("time"), "time")
    readings = []
    for key, unit, low, high in _POSITION:
        number = _number(where.get(key))
        if number is not None and low <= number <= high:
            readings.append((key, unit, number))
    return Uplink(network=network, dev_eui=dev_eui, f_cnt=0, f_port=0, received_at=received_us / 1e6,
                  readings=tuple(readings), skipped=0, source="location", received_us=received_us, event="location")


def _status(doc: dict[str, Any], topic_eui: str) -> Uplink:
    """ChirpStack ``status`` event: battery level (%, unless unavailable or on external power), link margin (dB)."""
    dev_eui = _chirpstack_eui(doc, topic_eui)
    received_us = _time_us(doc.get("time"), "time")
    readings: list[tuple[str, str | None, float]] = []
    battery = _number(doc.get("batteryLevel"))
    if battery is not None and not doc.get("batteryLevelUnavailable") and not doc.get("externalPowerSource"):
        readings.append(("battery", "%EL", battery))
    margin = _number(doc.get("margin"))
    if margin is not None:
        readings.append(("link_margin", "dB", margin))
    return Uplink(network=CHIRPSTACK, dev_eui=dev_eui, f_cnt=0, f_port=0, received_at=received_us / 1e6,
                  readings=tuple(readings), skipped=0, source="status", received_us=received_us, event="status")


def _chirpstack_eui(doc: dict[str, Any], topic_eui: str) -> str:
    info = _object(doc, "deviceInfo", "deviceInfo")
    if not _DEV_EUI.fullmatch(topic_eui):
        raise LoRaWANError("bad_dev_eui", f"the topic's DevEUI {topic_eui!r} is not 16 hex digits")
    body_eui = info.get("devEui")
    dev_eui = topic_eui.upper() if body_eui is None else _dev_eui(body_eui, "deviceInfo.devEui")
    if dev_eui != topic_eui.upper():
        raise LoRaWANError(
            "bad_dev_eui", f"deviceInfo.devEui {body_eui!r} differs from the topic's DevEUI {topic_eui!r}"
        )
    return dev_eui


# -- The Things Stack v3 ------------------------------------------------------


def _tts(doc: dict[str, Any], topic_device: str, channels: Mapping[int, str]) -> Uplink:
    ids = _object(doc, "end_device_ids", "end_device_ids")
    device_id = ids.get("device_id")
    if device_id is not None and device_id != topic_device:
        raise LoRaWANError(
            "bad_uplink",
            f"end_device_ids.device_id {device_id!r} differs from the topic's device {topic_device!r}",
        )
    dev_eui = _dev_eui(ids.get("dev_eui"), "end_device_ids.dev_eui")
    up = _object(doc, "uplink_message", "uplink_message")
    f_cnt = _uint(up.get("f_cnt"), "uplink_message.f_cnt", 0xFFFF_FFFF)
    f_port = _uint(up.get("f_port"), "uplink_message.f_port", 255)
    # The Network Server's reception time; the Application Server's (top level) if absent.
    when = up.get("received_at")
    field = "uplink_message.received_at"
    if when is None:
        when, field = doc.get("received_at"), "received_at"
    received_us = _time_us(when, field)
    correlation_ids = doc.get("correlation_ids")
    uplink_id = next(
        (c for c in correlation_ids if isinstance(c, str) and c.startswith("as:up:")), None
    ) if isinstance(correlation_ids, list) else None
    readings, skipped, source = _readings(
        up.get("decoded_payload"), "uplink_message.decoded_payload",
        up.get("frm_payload"), "uplink_message.frm_payload", channels,
    )
    return Uplink(
        network=TTS, dev_eui=dev_eui, f_cnt=f_cnt, f_port=f_port, received_at=received_us / 1e6,
        readings=readings, skipped=skipped, source=source,
        device_name=topic_device, uplink_id=uplink_id, received_us=received_us,
        simulated=doc.get("simulated") is True or up.get("simulated") is True,
    )


# -- ChirpStack v4 ------------------------------------------------------------


def _chirpstack(doc: dict[str, Any], topic_eui: str, channels: Mapping[int, str]) -> Uplink:
    info = _object(doc, "deviceInfo", "deviceInfo")
    dev_eui = _chirpstack_eui(doc, topic_eui)
    name = info.get("deviceName")
    dedup_id = doc.get("deduplicationId")
    readings, skipped, source = _readings(doc.get("object"), "object", doc.get("data"), "data", channels)
    received_us = _time_us(doc.get("time"), "time")
    return Uplink(
        network=CHIRPSTACK, dev_eui=dev_eui,
        f_cnt=_uint(doc.get("fCnt"), "fCnt", 0xFFFF_FFFF),
        f_port=_uint(doc.get("fPort"), "fPort", 255),
        received_at=received_us / 1e6,
        readings=readings, skipped=skipped, source=source,
        device_name=name if isinstance(name, str) else None,
        uplink_id=dedup_id if isinstance(dedup_id, str) else None, received_us=received_us,
    )


# -- shared -------------------------------------------------------------------

Readings = tuple[tuple[str, str | None, float], ...]


def _readings(
    decoded: object, decoded_field: str, raw: object, raw_field: str, channels: Mapping[int, str]
) -> tuple[Readings, int, str]:
    """The decoded payload's readings when there is one, else the raw frame's as LPP."""
    if decoded is not None and not isinstance(decoded, dict):
        raise LoRaWANError("bad_uplink", f"{decoded_field} is a {type(decoded).__name__}, not an object")
    if decoded:
        readings, skipped = _from_decoded(decoded, channels)
        return readings, skipped, "decoded"
    if raw is None or raw == "":
        raise LoRaWANError(
            "no_payload", f"the uplink has neither {decoded_field} nor {raw_field} (no application payload)"
        )
    if not isinstance(raw, str):
        raise LoRaWANError("bad_uplink", f"{raw_field} is a {type(raw).__name__}, not a base64 string")
    try:
        frame = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise LoRaWANError("bad_uplink", f"{raw_field} is not valid base64") from None
    try:
        values = decode_lpp(frame)
    except LppError as exc:
        raise LoRaWANError(
            "undecodable", f"{raw_field} is not a Cayenne LPP frame ({exc.reason}: {exc})"
        ) from exc
    out: dict[str, tuple[str, str | None, float]] = {}
    skipped = 0
    for v in values:
        name = channels.get(v.channel)
        if name is None:
            quantity = f"{v.kind}_{v.channel}"
        else:
            axis = _LPP_AXES.get(v.kind)
            quantity = name if axis is None else f"{name}_{axis}"
        if quantity in out:  # the same channel and kind twice in one frame: keep the first
            skipped += 1
            continue
        out[quantity] = (quantity, v.unit, v.value)
    return tuple(out.values()), skipped, "lpp"


def _from_decoded(decoded: dict[str, Any], channels: Mapping[int, str]) -> tuple[Readings, int]:
    """Flatten a decoded payload into numeric readings; count what is not a number."""
    items: list[tuple[str, object]] = []
    for key, value in decoded.items():
        renamed = _CHIRPSTACK_CAYENNE.get(key)
        if renamed is not None and isinstance(value, dict) and value and all(
            isinstance(ch, str) and ch.isascii() and ch.isdigit() and len(ch) <= 3 for ch in value
        ):
            items.extend((f"{renamed}_{int(ch)}", v) for ch, v in value.items())
        else:
            items.append((key, value))
    out: dict[str, tuple[str, str | None, float]] = {}
    skipped = 0
    stack: list[tuple[str, str | None, object, int]] = [(k, None, v, 1) for k, v in reversed(items)]
    while stack:
        top, sub, value, depth = stack.pop()
        if isinstance(value, dict):
            if depth >= _MAX_DEPTH or not value:
                skipped += 1
                continue
            stack.extend(
                (top, f"{sub}_{k}" if sub else str(k), v, depth + 1) for k, v in reversed(value.items())
            )
            continue
        number = _number(value)
        quantity, unit = _name(top, sub, channels)
        if number is None and isinstance(value, str):
            number, said = _number_with_unit(value)
            if said is not None:
                unit = said
        if number is None or quantity is None or quantity in out:
            skipped += 1
            continue
        out[quantity] = (quantity, unit, number)
    return tuple(out.values()), skipped


def _name(top: str, sub: str | None, channels: Mapping[int, str]) -> tuple[str | None, str | None]:
    """Quantity and unit of a decoded value at ``top`` (and nested ``sub``); quantity None if invalid."""
    unit: str | None = None
    quantity = top if sub is None else f"{top}_{sub}"
    known = QUANTITIES.get(top) if sub is None else None
    if known is not None:
        unit = known.unit
    else:
        match = _CHANNEL_KEY.fullmatch(top)
        kind = match.group(1) if match is not None and match.group(1) in _CAYENNE_UNITS else None
        if kind is None and top in _CAYENNE_UNITS:
            kind = top
        if kind is not None:
            unit = _CAYENNE_UNITS[kind] if sub is None else _AXIS_UNITS.get(kind, {}).get(sub)
            if match is not None and kind == match.group(1):
                name = channels.get(int(match.group(2)))
                if name is not None:
                    quantity = name if sub is None else f"{name}_{sub}"
    if not _QUANTITY.fullmatch(quantity):
        return None, None
    return quantity, unit


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _number_with_unit(text: str) -> tuple[float | None, str | None]:
    """A string such as "3.384 V" or "30.11 °C": the number and the SenML unit it names.

    (None, None) when the text is no number, or names a unit citylab does not know.
    """
    match = _NUMBER_WITH_UNIT.fullmatch(text) if len(text) <= 64 else None
    if match is None:
        return None, None
    number = _number(float(match.group(1)))
    spelled = match.group(2)
    if spelled is None:
        return number, None
    unit = _UNIT_SPELLINGS.get(spelled)
    return (number, unit) if unit is not None else (None, None)


def _load(payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise LoRaWANError("undecodable", f"the uplink is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise LoRaWANError("undecodable", f"the uplink is a JSON {type(doc).__name__}, not an object")
    return doc


def _object(doc: dict[str, Any], key: str, field: str) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        raise LoRaWANError("bad_uplink", f"{field} is missing")
    if not isinstance(value, dict):
        raise LoRaWANError("bad_uplink", f"{field} is a {type(value).__name__}, not an object")
    return value


def _dev_eui(value: object, field: str) -> str:
    if value is None:
        raise LoRaWANError("bad_uplink", f"{field} is missing (a device without a DevEUI cannot be mapped)")
    if not isinstance(value, str) or not _DEV_EUI.fullmatch(value):
        raise LoRaWANError("bad_dev_eui", f"{field} {value!r} is not 16 hex digits")
    return value.upper()


def _uint(value: object, field: str, high: int) -> int:
    """A protobuf-JSON unsigned integer: absent means 0; a number or a decimal string."""
    if value is None:
        return 0
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise LoRaWANError("bad_uplink", f"{field} {value!r} is not an integer in 0..{high}")
    return value


def _time_us(value: object, field: str) -> int:
    """RFC 3339 time with an offset (nanoseconds allowed) to exact UTC microseconds.

    Integer arithmetic throughout: the fraction is rounded to microseconds half to even,
    never through a float.
    """
    if value is None:
        raise LoRaWANError("bad_uplink", f"{field} is missing (the reception time)")
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise LoRaWANError("bad_uplink", f"{field} {value!r} is not an RFC 3339 time with a UTC offset")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        if offset in ("Z", "z"):
            tz = timezone.utc
        else:
            sign = -1 if offset[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), min(int(second), 59), tzinfo=tz
        )
    except ValueError as exc:
        raise LoRaWANError("bad_uplink", f"{field} {value!r} is not a valid time: {exc}") from None
    whole = int(moment.timestamp())
    if not _EARLIEST <= whole < _LATEST:
        raise LoRaWANError("bad_uplink", f"{field} {value!r} is outside 2000..2099")
    micros = 0
    if fraction:
        scaled, rest = divmod(int(fraction) * 10**6, 10 ** len(fraction))
        half = 10 ** len(fraction)
        if 2 * rest > half or (2 * rest == half and scaled % 2):
            scaled += 1
        micros = scaled
    return whole * 1_000_000 + micros
