"""The contract between devices, edge and platform: topics, SenML, Cayenne LPP, serial and radio lines.

Pure codecs: no I/O, nothing heavier than the standard library and cbor2, so
the same code runs on Raspberry-Pi-class gateways and in ingest. Every
decoder raises only :class:`ProtocolError` subclasses. The wire formats are
documented for device makers in ``docs/protocol.md``.
"""

from __future__ import annotations

from protocol.errors import (
    LineError,
    LppError,
    ProtocolError,
    RadioError,
    SenMLError,
    TopicError,
)
from protocol.lora_uart import (
    MAX_PAYLOAD,
    RadioFrame,
    format_rcv,
    format_send,
    parse_radio_line,
)
from protocol.lpp import LPP_KINDS, LppValue, decode_lpp, encode_lpp
from protocol.lorawan import (
    LORAWAN_FILTERS,
    LoRaWANError,
    Uplink,
    decode_uplink,
    dedup_key,
    lorawan_network,
)
from protocol.quantities import QUANTITIES, Quantity, quantity
from protocol.units import UNITS, Unit, UnitError, convert
from protocol.senml import (
    SENML_CBOR,
    SENML_JSON,
    Pack,
    Record,
    decode_pack,
    encode_pack,
)
from protocol.serial_line import SensorLine, checksum, format_line, parse_line
from protocol.topics import (
    INGEST_FILTERS,
    ingest_filters,
    Topic,
    Watermark,
    committed_topic,
    decode_watermark,
    down_topic,
    encode_watermark,
    lpp_topic,
    parse_topic,
    status_topic,
    up_topic,
)

__all__ = [
    "INGEST_FILTERS",
    "ingest_filters",
    "LPP_KINDS",
    "MAX_PAYLOAD",
    "QUANTITIES",
    "UNITS",
    "Unit",
    "UnitError",
    "convert",
    "SENML_CBOR",
    "SENML_JSON",
    "LineError",
    "LppError",
    "LppValue",
    "Pack",
    "ProtocolError",
    "Quantity",
    "RadioError",
    "RadioFrame",
    "Record",
    "SenMLError",
    "SensorLine",
    "Topic",
    "TopicError",
    "Watermark",
    "checksum",
    "committed_topic",
    "decode_lpp",
    "decode_pack",
    "decode_watermark",
    "down_topic",
    "encode_lpp",
    "encode_pack",
    "encode_watermark",
    "format_line",
    "format_rcv",
    "format_send",
    "lpp_topic",
    "parse_line",
    "parse_radio_line",
    "parse_topic",
    "quantity",
    "status_topic",
    "up_topic",
    "LORAWAN_FILTERS",
    "LoRaWANError",
    "Uplink",
    "decode_uplink",
    "dedup_key",
    "lorawan_network",
]
