"""SenML (RFC 8428) packs in JSON and CBOR, as citylab sends them over MQTT.

One MQTT message on ``lab/{org}/{device}/up`` is one :class:`Pack`: a SenML
array whose resolved records are numbers named ``"{device}/{quantity}"`` with
absolute UTC times. Two citylab extension labels in the first record,
``"bid"`` (boot id, text) and ``"seq"`` (non-negative integer), identify the
pack for de-duplication together with the device of the topic.

The decoder implements the RFC 8428 resolution rules (section 4.6): base
fields may appear in any record and apply to the records that follow. It
accepts only what citylab can store: numeric values with absolute times.
See ``docs/protocol.md`` for the wire format a device maker implements.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import cbor2

from protocol.errors import SenMLError

__all__ = [
    "SENML_CBOR",
    "SENML_JSON",
    "Pack",
    "Record",
    "decode_pack",
    "encode_pack",
    "read_identity",
    "text_problem",
]

SENML_JSON = "application/senml+json"
SENML_CBOR = "application/senml+cbor"

#: Resolved times below this are relative to "now" in RFC 8428; citylab refuses them.
RELATIVE_TIME_LIMIT = 2**28

# What the platform's schema can hold (PostgreSQL bigint, text without NUL, btree keys):
# anything beyond is refused here, before it can reach SQL.
SEQ_MAX = 2**63 - 1          #: ``seq`` is stored as bigint
BOOT_ID_MAX_CHARS = 64       #: ``bid`` is part of the de-duplication key
NAME_PART_MAX_CHARS = 64     #: the device and the quantity of a resolved name, each
UNIT_MAX_CHARS = 32          #: a SenML unit symbol
TIME_MAX_S = 9.2e12          #: about year 293,000: beyond it, microseconds overflow int64

# NUL (PostgreSQL text cannot hold it) and UTF-16 surrogates (a JSON "\ud800" escape
# decodes to one; it has no UTF-8 encoding).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# A resolved name: exactly one "/" between a non-empty device and quantity.
_NAME = re.compile(r"[A-Za-z0-9_.:-]+/[A-Za-z0-9_.:-]+")

_EXT_BID = "bid"
_EXT_SEQ = "seq"


@dataclass(frozen=True, slots=True)
class Record:
    """One reading: ``name`` is ``"{device}/{quantity}"``, ``time`` absolute UTC seconds."""

    name: str
    value: float
    time: float
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Pack:
    """One MQTT message: the records and the pack's ``(boot_id, seq)`` identity."""

    boot_id: str | None
    seq: int | None
    records: tuple[Record, ...]


@dataclass(frozen=True, slots=True)
class _Labels:
    """The map keys of one SenML representation (JSON text, CBOR integers)."""

    bver: Any
    bn: Any
    bt: Any
    bu: Any
    bv: Any
    bs: Any
    n: Any
    u: Any
    v: Any
    vs: Any
    vb: Any
    s: Any
    t: Any
    vd: Any


# RFC 8428 section 4.3 (JSON) and section 6, table 6 (CBOR).
_JSON = _Labels("bver", "bn", "bt", "bu", "bv", "bs", "n", "u", "v", "vs", "vb", "s", "t", "vd")
_CBOR = _Labels(-1, -2, -3, -4, -5, -6, 0, 1, 2, 3, 4, 5, 6, 8)


# --------------------------------------------------------------------------- encode


def encode_pack(pack: Pack, *, content_type: str = SENML_CBOR) -> bytes:
    """Encode ``pack`` as a SenML array in ``content_type`` (JSON or CBOR).

    The first record carries ``bt`` (time of the first record) and the
    ``bid``/``seq`` extension labels; ``bn`` is repeated whenever the device
    changes; ``t`` is relative to ``bt`` and omitted when zero.
    """
    labels = _labels_for(content_type)
    if not pack.records:
        raise SenMLError("empty", "a pack needs at least one record")
    if pack.boot_id is not None and not isinstance(pack.boot_id, str):
        raise SenMLError("bad_header", f"boot_id must be text, got {pack.boot_id!r}")
    if pack.seq is not None and (
        type(pack.seq) is not int or pack.seq < 0  # noqa: E721 - bool is not a seq
    ):
        raise SenMLError("bad_header", f"seq must be a non-negative int, got {pack.seq!r}")

    base_time = pack.records[0].time
    out: list[dict[Any, Any]] = []
    device: str | None = None
    for index, record in enumerate(pack.records):
        name = record.name
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            raise SenMLError(
                "bad_name", f"record {index}: name {name!r} is not '<device>/<quantity>'"
            )
        value = float(record.value)
        if not math.isfinite(value):
            raise SenMLError("non_finite", f"record {index}: value {value!r} is not finite")
        time = float(record.time)
        if not math.isfinite(time) or time < RELATIVE_TIME_LIMIT:
            raise SenMLError("bad_time", f"record {index}: time {time!r} is not absolute")
        rec_device, _, rec_quantity = name.partition("/")
        entry: dict[Any, Any] = {}
        if index == 0:
            entry[labels.bt] = base_time
            if pack.boot_id is not None:
                entry[_EXT_BID] = pack.boot_id
            if pack.seq is not None:
                entry[_EXT_SEQ] = pack.seq
        if rec_device != device:
            entry[labels.bn] = rec_device + "/"
            device = rec_device
        entry[labels.n] = rec_quantity
        if record.unit is not None:
            entry[labels.u] = record.unit
        entry[labels.v] = value
        offset = time - base_time
        if offset != 0:
            entry[labels.t] = offset
        out.append(entry)

    if labels is _CBOR:
        # canonical=True picks the shortest float encoding that is exact.
        return cbor2.dumps(out, canonical=True)
    return json.dumps(out, separators=(",", ":"), allow_nan=False).encode("utf-8")


# --------------------------------------------------------------------------- decode


def decode_pack(payload: bytes, *, content_type: str | None = None) -> Pack:
    """Decode a SenML pack; raise :class:`SenMLError` for anything citylab cannot store.

    ``content_type`` comes from the MQTT 5 content-type property or the topic
    suffix; when ``None`` the representation is sniffed from the first byte.
    """
    if content_type is None:
        labels = _sniff(payload)
    else:
        labels = _labels_for(content_type)
    if labels is _CBOR:
        items = _load_cbor(payload)
    else:
        items = _load_json(payload)
    return _resolve(items, labels)


def read_identity(payload: bytes, *, content_type: str | None = None) -> tuple[str, int] | None:
    """The ``(bid, seq)`` of a pack :func:`decode_pack` refused, when its first record has a valid one.

    Lets the platform account for a refused pack under its identity, so that a
    redelivery of it is recognised.
    """
    try:
        labels = _sniff(payload) if content_type is None else _labels_for(content_type)
        items = _load_cbor(payload) if labels is _CBOR else _load_json(payload)
        if type(items) is not list or not items:
            return None
        boot_id, seq = _header(items[0])
    except SenMLError:
        return None
    return None if boot_id is None or seq is None else (boot_id, seq)


def _labels_for(content_type: str) -> _Labels:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == SENML_CBOR:
        return _CBOR
    if media == SENML_JSON:
        return _JSON
    raise SenMLError(
        "not_senml", f"content type {content_type!r} is neither {SENML_JSON} nor {SENML_CBOR}"
    )


def _sniff(payload: bytes) -> _Labels:
    if payload and 0x80 <= payload[0] <= 0x9F:  # CBOR major type 4: array
        return _CBOR
    stripped = payload.lstrip(b" \t\r\n")
    if stripped[:1] == b"[":
        return _JSON
    raise SenMLError(
        "not_senml", "payload is neither a SenML JSON array ('[') nor a CBOR array (0x80-0x9f)"
    )


def _load_json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise SenMLError("undecodable", f"invalid SenML JSON: {exc}") from None


def _load_cbor(payload: bytes) -> Any:
    stream = BytesIO(payload)
    try:
        items = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises several types (decode, type, overflow, memory)
        raise SenMLError("undecodable", f"invalid SenML CBOR: {exc}") from None
    if stream.tell() != len(payload):
        raise SenMLError(
            "undecodable",
            f"invalid SenML CBOR: {len(payload) - stream.tell()} bytes after the array",
        )
    return items


def _number(value: Any) -> bool:
    # bool is an int subclass but a SenML boolean, never a number.
    kind = type(value)
    return kind is float or kind is int


def text_problem(text: str, max_chars: int) -> str | None:
    """Why ``text`` cannot be stored as a key or label (None when it can)."""
    if len(text) > max_chars:
        return f"is {len(text)} characters long, more than {max_chars}"
    found = _UNSTORABLE.search(text)
    if found is not None:
        return f"holds the character U+{ord(found.group()):04X}, which cannot be stored"
    return None


def _resolve(items: Any, L: _Labels) -> Pack:  # noqa: N803 - L reads as "labels"
    if type(items) is not list:
        raise SenMLError("not_senml", "a SenML pack is an array of records")
    if not items:
        raise SenMLError("empty", "the SenML pack has no records")

    boot_id, seq = _header(items[0])

    # Label constants hoisted into locals: this loop runs ~100k times per second.
    k_bver, k_bn, k_bt, k_bu, k_bv, k_bs = L.bver, L.bn, L.bt, L.bu, L.bv, L.bs
    k_n, k_u, k_v, k_vs, k_vb, k_s, k_t, k_vd = L.n, L.u, L.v, L.vs, L.vb, L.s, L.t, L.vd
    isfinite = math.isfinite
    name_ok = _NAME.fullmatch
    valid_names: set[str] = set()  # names repeat within a pack: check each once
    valid_units: set[str | None] = {None}  # units too

    base_name = ""
    base_time = 0.0
    base_unit: str | None = None
    base_value = 0.0
    records: list[Record] = []
    append = records.append

    for index, item in enumerate(items):
        if type(item) is not dict:
            raise SenMLError("not_senml", f"record {index}: a SenML record is a map")
        if index and (_EXT_BID in item or _EXT_SEQ in item):
            raise SenMLError(
                "bad_header", f"record {index}: 'bid' and 'seq' belong in the first record only"
            )
        for key in item:
            if type(key) is str and key.endswith("_"):
                raise SenMLError(
                    "unsupported_label",
                    f"record {index}: must-understand label {key!r} is not supported",
                )

        # ---- base fields (apply to this record and the ones after it)
        if k_bver in item:
            bver = item[k_bver]
            if type(bver) is not int or bver < 1 or bver > 10:
                raise SenMLError(
                    "unsupported_version", f"record {index}: SenML version {bver!r} is not 1..10"
                )
        if k_bn in item:
            base_name = item[k_bn]
            if type(base_name) is not str:
                raise SenMLError("bad_name", f"record {index}: base name must be text")
        if k_bt in item:
            bt = item[k_bt]
            if not _number(bt) or not isfinite(bt):
                raise SenMLError("bad_time", f"record {index}: base time {bt!r} is not a number")
            base_time = bt
        if k_bu in item:
            base_unit = item[k_bu]
            if type(base_unit) is not str:
                raise SenMLError("bad_unit", f"record {index}: base unit must be text")
        if k_bv in item:
            bv = item[k_bv]
            if not _number(bv) or not isfinite(bv):
                raise SenMLError(
                    "non_finite", f"record {index}: base value {bv!r} is not a finite number"
                )
            base_value = bv
        if k_bs in item:
            raise SenMLError(
                "unsupported_value",
                f"record {index}: base sum ('bs') is not supported; citylab stores values only",
            )

        # ---- name
        name = item.get(k_n, "")
        if type(name) is not str:
            raise SenMLError("bad_name", f"record {index}: name must be text")
        name = base_name + name
        if name not in valid_names:
            if name_ok(name) is None:
                raise SenMLError(
                    "bad_name",
                    f"record {index}: resolved name {_shown(name)} is not '<device>/<quantity>' "
                    "(one '/', both parts of [A-Za-z0-9_.:-])",
                )
            device, _, quantity = name.partition("/")
            if len(device) > NAME_PART_MAX_CHARS or len(quantity) > NAME_PART_MAX_CHARS:
                raise SenMLError(
                    "bad_name",
                    f"record {index}: resolved name {_shown(name)}: device and quantity may have "
                    f"at most {NAME_PART_MAX_CHARS} characters each",
                )
            valid_names.add(name)

        # ---- value
        if k_v in item:
            value = item[k_v]
            if not _number(value):
                raise SenMLError(
                    "unsupported_value", f"record {index}: value {value!r} is not a number"
                )
            try:
                value = float(value + base_value)
            except OverflowError:
                value = math.inf
            if not isfinite(value):
                raise SenMLError("non_finite", f"record {index}: value {value!r} is not finite")
        elif k_vs in item or k_vb in item or k_vd in item or k_s in item:
            raise SenMLError(
                "unsupported_value",
                f"record {index}: string, boolean, data and sum values are not supported; "
                "citylab stores numeric values ('v') only",
            )
        else:
            raise SenMLError("missing_value", f"record {index}: no value ('v')")
        if k_s in item:
            raise SenMLError(
                "unsupported_value",
                f"record {index}: sum ('s') is not supported; citylab stores values only",
            )

        # ---- time
        t = item.get(k_t, 0)
        if not _number(t):
            raise SenMLError("bad_time", f"record {index}: time {t!r} is not a number")
        try:
            time = float(base_time + t)
        except OverflowError:
            time = math.inf
        if not RELATIVE_TIME_LIMIT <= time <= TIME_MAX_S:  # also false for NaN
            if isfinite(time) and time > TIME_MAX_S:
                raise SenMLError(
                    "time_out_of_range",
                    f"record {index}: resolved time {time!r} s is beyond what int64 microseconds hold",
                )
            raise SenMLError(
                "bad_time",
                f"record {index}: resolved time {time!r} is not an absolute UTC time; "
                "citylab requires absolute times (>= 2**28 s), relative times are not accepted",
            )

        # ---- unit
        unit = item.get(k_u, base_unit)
        if unit is not None and type(unit) is not str:
            raise SenMLError("bad_unit", f"record {index}: unit must be text")
        if unit not in valid_units:
            problem = text_problem(unit, UNIT_MAX_CHARS)
            if problem is not None:
                raise SenMLError("bad_unit", f"record {index}: unit {_shown(unit)} {problem}")
            valid_units.add(unit)

        append(Record(name, value, time, unit))

    return Pack(boot_id, seq, tuple(records))


def _header(first: Any) -> tuple[str | None, int | None]:
    if type(first) is not dict:
        raise SenMLError("not_senml", "record 0: a SenML record is a map")
    boot_id = first.get(_EXT_BID)
    if boot_id is not None:
        if type(boot_id) is not str:
            raise SenMLError("bad_header", f"record 0: 'bid' must be text, got {_shown(boot_id)}")
        problem = text_problem(boot_id, BOOT_ID_MAX_CHARS)
        if problem is not None:
            raise SenMLError("bad_header", f"record 0: 'bid' {_shown(boot_id)} {problem}")
    seq = first.get(_EXT_SEQ)
    if seq is not None and (type(seq) is not int or seq < 0 or seq > SEQ_MAX):
        raise SenMLError(
            "bad_header", f"record 0: 'seq' must be an integer 0..2**63-1, got {_shown(seq)}"
        )
    return boot_id, seq


def _shown(value: Any, limit: int = 40) -> str:
    """``repr`` of a refused value, cut short: error details are stored and logged."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"

