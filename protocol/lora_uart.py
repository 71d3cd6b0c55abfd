"""Text interface of a UART LoRa radio module (AT commands, RYLR896 style).

The node's host sends ``AT+SEND=<address>,<length>,<data>\\r\\n``; the
receiving module reports each frame to the gateway as
``+RCV=<address>,<length>,<data>,<rssi>,<snr>\\r\\n`` and also prints status
lines (``+OK``, ``+ERR=<code>``, ``+READY``) that the host skips.

citylab difference from the RYLR896 datasheet: ``<data>`` is the binary
payload (a Cayenne LPP frame) as uppercase hex and ``<length>`` counts
payload *bytes* (half the hex digits), because the frames are binary.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from protocol.errors import RadioError

__all__ = ["MAX_PAYLOAD", "RadioFrame", "format_rcv", "format_send", "parse_radio_line"]

#: Largest payload a module sends in one frame (RYLR896: 240 bytes).
MAX_PAYLOAD = 240

_RCV = b"+RCV="
_STATUS = (b"+OK", b"+READY")
_ERR = b"+ERR="
_UINT = re.compile(rb"[0-9]{1,5}")
_INT = re.compile(rb"-?[0-9]{1,4}")
_HEX = re.compile(rb"(?:[0-9A-Fa-f]{2})*")
_DECIMAL = re.compile(rb"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


@dataclass(frozen=True, slots=True)
class RadioFrame:
    """One received frame: sending node address, payload, signal quality."""

    address: int
    payload: bytes
    rssi: int  # dBm
    snr: float  # dB


def _check_address(address: int) -> None:
    if type(address) is not int or not 0 <= address <= 65535:
        raise RadioError("bad_address", f"address {address!r} is not 0..65535")


def _check_payload(payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD:
        raise RadioError(
            "bad_length", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD} bytes"
        )


def format_send(address: int, payload: bytes) -> bytes:
    """The ``AT+SEND`` command a node's host writes to its module."""
    _check_address(address)
    _check_payload(payload)
    return b"AT+SEND=%d,%d,%b\r\n" % (address, len(payload), payload.hex().upper().encode())


def format_rcv(frame: RadioFrame) -> bytes:
    """The ``+RCV`` line a receiving module writes to the gateway (used by the simulator)."""
    _check_address(frame.address)
    _check_payload(frame.payload)
    snr = float(frame.snr)
    if not math.isfinite(snr):
        raise RadioError("garbage", f"snr {frame.snr!r} is not finite")
    return b"+RCV=%d,%d,%b,%d,%b\r\n" % (
        frame.address,
        len(frame.payload),
        frame.payload.hex().upper().encode(),
        frame.rssi,
        repr(snr).encode(),
    )


def parse_radio_line(line: bytes) -> RadioFrame | None:
    """Parse one module line: a :class:`RadioFrame`, or ``None`` for a status line."""
    line = line.rstrip(b"\r\n")
    if not line.startswith(_RCV):
        if line in _STATUS or line.startswith(_ERR):
            return None
        if _RCV.startswith(line):
            raise RadioError("truncated", f"line {bytes(line)!r} ends before '+RCV='")
        raise RadioError("garbage", f"not a +RCV/+OK/+ERR/+READY line: {bytes(line[:16])!r}")
    parts = line[len(_RCV) :].split(b",")
    if len(parts) < 5:
        raise RadioError("truncated", f"+RCV line has {len(parts)} of 5 fields")
    if len(parts) > 5:
        raise RadioError("garbage", f"+RCV line has {len(parts)} fields, expected 5")
    address_text, length_text, data, rssi_text, snr_text = parts
    if _UINT.fullmatch(address_text) is None or int(address_text) > 65535:
        raise RadioError("garbage", f"address {bytes(address_text)!r} is not 0..65535")
    if _UINT.fullmatch(length_text) is None:
        raise RadioError("bad_length", f"length {bytes(length_text)!r} is not a number")
    if _HEX.fullmatch(data) is None:
        raise RadioError("bad_hex", f"payload {bytes(data[:32])!r}... is not whole hex bytes")
    length = int(length_text)
    if len(data) != 2 * length:
        raise RadioError(
            "bad_length", f"length {length} but the payload has {len(data) // 2} bytes"
        )
    if _INT.fullmatch(rssi_text) is None:
        raise RadioError("garbage", f"rssi {bytes(rssi_text)!r} is not an integer")
    if _DECIMAL.fullmatch(snr_text) is None:
        raise RadioError("garbage", f"snr {bytes(snr_text)!r} is not a decimal number")
    return RadioFrame(int(address_text), bytes.fromhex(data.decode("ascii")), int(rssi_text),
                      float(snr_text))
