"""Cayenne Low Power Payload (LPP): the binary frames of LoRa nodes.

A frame is a sequence of ``channel (1 byte) | type (1 byte) | data`` items;
data is big-endian, its size, signedness and resolution fixed by the type
(the myDevices table plus the extended types of the ElectronicCats
CayenneLPP library). Multi-axis types decode into one :class:`LppValue` per
axis (``accelerometer_x`` ...). Units are SenML unit names; a kind whose
native unit has no SenML name (G, deg/s, unitless inputs) has unit ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from protocol.errors import LppError

__all__ = ["LPP_KINDS", "LppValue", "decode_lpp", "encode_lpp"]


@dataclass(frozen=True, slots=True)
class LppValue:
    """One decoded value: the node's channel, the kind of value, its unit."""

    channel: int
    kind: str
    unit: str | None
    value: float


@dataclass(frozen=True, slots=True)
class _Field:
    kind: str
    unit: str | None
    size: int  # bytes
    signed: bool
    divisor: int  # raw integer / divisor = value (division keeps 272/10 == 27.2 exact)


@dataclass(frozen=True, slots=True)
class _Type:
    code: int
    fields: tuple[_Field, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.fields)


def _one(code: int, kind: str, unit: str | None, size: int, signed: bool, divisor: int) -> _Type:
    return _Type(code, (_Field(kind, unit, size, signed, divisor),))


def _xyz(code: int, kind: str, divisor: int) -> _Type:
    return _Type(code, tuple(_Field(f"{kind}_{axis}", None, 2, True, divisor) for axis in "xyz"))


_TYPES: tuple[_Type, ...] = (
    _one(0x00, "digital_input", None, 1, False, 1),
    _one(0x01, "digital_output", None, 1, False, 1),
    _one(0x02, "analog_input", None, 2, True, 100),
    _one(0x03, "analog_output", None, 2, True, 100),
    _one(0x64, "generic_sensor", None, 4, False, 1),
    _one(0x65, "illuminance", "lx", 2, False, 1),
    _one(0x66, "presence", None, 1, False, 1),
    _one(0x67, "temperature", "Cel", 2, True, 10),
    _one(0x68, "humidity", "%RH", 1, False, 2),
    _xyz(0x71, "accelerometer", 1000),  # G (standard gravity); no SenML unit
    _one(0x73, "barometric_pressure", "hPa", 2, False, 10),
    _one(0x74, "voltage", "V", 2, False, 100),
    _one(0x75, "current", "A", 2, False, 1000),
    _one(0x76, "frequency", "Hz", 4, False, 1),
    _one(0x78, "percentage", "%", 1, False, 1),
    _one(0x79, "altitude", "m", 2, True, 1),
    _one(0x7D, "concentration", "ppm", 2, False, 1),
    _one(0x80, "power", "W", 2, False, 1),
    _one(0x82, "distance", "m", 4, False, 1000),
    _one(0x83, "energy", "kWh", 4, False, 1000),
    _one(0x84, "direction", "deg", 2, False, 1),
    _one(0x85, "unix_time", "s", 4, False, 1),
    _xyz(0x86, "gyrometer", 100),  # deg/s; no SenML unit
    _Type(
        0x88,
        (
            _Field("gps_latitude", "lat", 3, True, 10_000),
            _Field("gps_longitude", "lon", 3, True, 10_000),
            _Field("gps_altitude", "m", 3, True, 100),
        ),
    ),
    _one(0x8E, "switch", None, 1, False, 1),
)

# Decoding table indexed by type byte: (item size, fields) or None.
_BY_CODE: list[tuple[int, tuple[_Field, ...]] | None] = [None] * 256
for _t in _TYPES:
    _BY_CODE[_t.code] = (_t.size, _t.fields)

# Encodable kinds: single-value types only (an axis alone is not a frame item).
_ENCODERS: dict[str, tuple[int, _Field]] = {
    t.fields[0].kind: (t.code, t.fields[0]) for t in _TYPES if len(t.fields) == 1
}

#: Every kind :func:`decode_lpp` can produce, with its SenML unit (``None``: unitless or unregistered).
LPP_KINDS: Mapping[str, str | None] = {f.kind: f.unit for t in _TYPES for f in t.fields}


def decode_lpp(payload: bytes) -> tuple[LppValue, ...]:
    """Decode a Cayenne LPP frame; raise :class:`LppError` on any malformed byte."""
    n = len(payload)
    if n == 0:
        raise LppError("empty", "the LPP frame is empty")
    from_bytes = int.from_bytes
    out: list[LppValue] = []
    i = 0
    while i < n:
        if i + 2 > n:
            raise LppError(
                "truncated", f"offset {i}: channel byte without a type byte (frame of {n} bytes)"
            )
        channel = payload[i]
        code = payload[i + 1]
        spec = _BY_CODE[code]
        if spec is None:
            raise LppError(
                "unknown_lpp_type", f"offset {i + 1}: unknown LPP type 0x{code:02X} (channel {channel})"
            )
        size, fields = spec
        start = i + 2
        end = start + size
        if end > n:
            raise LppError(
                "truncated",
                f"offset {i + 1}: LPP type 0x{code:02X} needs {size} data bytes, "
                f"{n - start} left",
            )
        for field in fields:
            stop = start + field.size
            raw = from_bytes(payload[start:stop], "big", signed=field.signed)
            out.append(LppValue(channel, field.kind, field.unit, raw / field.divisor))
            start = stop
        i = end
    return tuple(out)


def encode_lpp(values: Iterable[tuple[int, str, float]]) -> bytes:
    """Encode ``(channel, kind, value)`` triples as one LPP frame (single-value kinds).

    Values are rounded to the type's resolution; a value that does not fit
    raises :class:`LppError` with reason ``"out_of_range"``.
    """
    out = bytearray()
    for channel, kind, value in values:
        if not (type(channel) is int and 0 <= channel <= 255):  # noqa: E721
            raise LppError("bad_channel", f"channel {channel!r} is not 0..255")
        try:
            code, field = _ENCODERS[kind]
        except KeyError:
            raise LppError(
                "unknown_kind",
                f"kind {kind!r} cannot be encoded; encodable kinds: {', '.join(sorted(_ENCODERS))}",
            ) from None
        try:
            raw = round(value * field.divisor)
            data = raw.to_bytes(field.size, "big", signed=field.signed)
        except (OverflowError, ValueError, TypeError):
            raise LppError(
                "out_of_range", f"channel {channel}: {kind} value {value!r} does not fit LPP type "
                f"0x{code:02X} ({field.size} bytes, {'signed' if field.signed else 'unsigned'}, "
                f"resolution 1/{field.divisor})"
            ) from None
        out.append(channel)
        out.append(code)
        out += data
    return bytes(out)
