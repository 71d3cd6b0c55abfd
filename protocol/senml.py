"""SenML (RFC 8428) packs in JSON and CBOR: citylab's own and any standard device's.

A citylab device publishes one :class:`Pack` per MQTT message on
``lab/{org}/{device}/up``: records named ``"{device}/{quantity}"`` with absolute
UTC times. Two citylab extension labels in the first record, ``"bid"`` (boot
id, text) and ``"seq"`` (non-negative integer), identify the pack for
de-duplication together with the device of the topic.

The decoder resolves any RFC 8428 pack as section 4.6 defines: base fields in
any record apply to it and the records after it; a record of base fields only
yields no reading; relative and zero times (below 2**28) are resolved against
the time of reception; numbers may be CBOR tag 4 decimal fractions; ``s`` and
``bs`` make a sum record of their own; ``vs``/``vb``/``vd`` are kept as typed
records. Versions 1..10 and RFC 9100's 26 (secondary units) are understood.
Which series a resolved name belongs to is ingest's business
(``ingest.decode``), not this module's. See ``docs/protocol.md``.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time as _clock
from dataclasses import dataclass
from decimal import Decimal
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

#: Resolved times below this are relative to "now" (RFC 8428 4.5.3): the time of reception.
RELATIVE_TIME_LIMIT = 2**28

#: RFC 9100 versions beyond 10: feature bits above the 4 version bits; 26 = 10 + 2**4, the
#: "secondary units" feature (units of the RFC 8798 registry in "u" and "bu").
SUPPORTED_FEATURE_VERSIONS = frozenset({26})

# What the platform's schema can hold (PostgreSQL bigint, text without NUL, btree keys):
# anything beyond is refused here, before it can reach SQL.
SEQ_MAX = 2**63 - 1          #: ``seq`` is stored as bigint
BOOT_ID_MAX_CHARS = 64       #: ``bid`` is part of the de-duplication key
NAME_PART_MAX_CHARS = 64     #: the device and the quantity of a resolved name, each
NAME_MAX_CHARS = 256         #: a resolved SenML name (URNs, IPv6 addresses, paths)
STRING_MAX_CHARS = 4096      #: a string value ("vs")
DATA_MAX_BYTES = 65536       #: a data value ("vd")
UNIT_MAX_CHARS = 32          #: a SenML unit symbol
TIME_MAX_S = 9.2e12          #: about year 293,000: beyond it, microseconds overflow int64

# NUL (PostgreSQL text cannot hold it) and UTF-16 surrogates (a JSON "\ud800" escape
# decodes to one; it has no UTF-8 encoding).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# A citylab name: exactly one "/" between a non-empty device and quantity.
_CITYLAB_NAME = re.compile(r"[A-Za-z0-9_.:-]+/[A-Za-z0-9_.:-]+")
# A SenML name (RFC 8428 4.5.1).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]*")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")

_EXT_BID = "bid"
_EXT_SEQ = "seq"


@dataclass(frozen=True, slots=True)
class Record:
    """One resolved record (RFC 8428 4.6): ``time`` in absolute UTC seconds.

    ``field`` says what ``value`` is: ``"v"`` a number, ``"s"`` a sum (the record's
    ``s`` plus the base sum), ``"vs"`` text, ``"vb"`` a boolean, ``"vd"`` bytes. A
    SenML record with both a value and a sum resolves to two records. Packs citylab
    devices send name records ``"{device}/{quantity}"``.
    """

    name: str
    value: float | str | bool | bytes
    time: float
    unit: str | None = None
    field: str = "v"


@dataclass(frozen=True, slots=True)
class Pack:
    """One MQTT message: the records and the pack's ``(boot_id, seq)`` identity."""

    boot_id: str | None
    seq: int | None
    records: tuple[Record, ...]
    relative: bool = False  # some time was relative to the time of reception


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
    ut: Any


# RFC 8428 section 4.3 (JSON) and section 6, table 6 (CBOR).
_JSON = _Labels("bver", "bn", "bt", "bu", "bv", "bs", "n", "u", "v", "vs", "vb", "s", "t", "vd", "ut")
_CBOR = _Labels(-1, -2, -3, -4, -5, -6, 0, 1, 2, 3, 4, 5, 6, 8, 7)


# --------------------------------------------------------------------------- encode


def encode_pack(pack: Pack, *, content_type: str = SENML_CBOR) -> bytes:
    """Encode ``pack`` as a SenML array in ``content_type`` (JSON or CBOR).

    The first record carries ``bt`` (time of the first record) and the
    ``bid``/``seq`` extension labels; ``bn`` is repeated whenever the device
    changes; ``t`` is relative to ``bt`` and omitted when zero. A record's ``field``
    picks its label: ``v`` (and ``s``, written as a value), ``vs``, ``vb`` or ``vd``.
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
        if not isinstance(name, str) or _CITYLAB_NAME.fullmatch(name) is None or _NAME.fullmatch(name) is None:
            raise SenMLError(
                "bad_name", f"record {index}: name {name!r} is not '<device>/<quantity>'"
            )
        value = _encoded_value(record, labels, index)
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
        entry[getattr(labels, record.field if record.field in _TYPED_FIELDS else "v")] = value
        offset = time - base_time
        if offset != 0:
            entry[labels.t] = offset
        out.append(entry)

    if labels is _CBOR:
        # canonical=True picks the shortest float encoding that is exact.
        return cbor2.dumps(out, canonical=True)
    return json.dumps(out, separators=(",", ":"), allow_nan=False).encode("utf-8")


_TYPED_FIELDS = ("vs", "vb", "vd")


def _encoded_value(record: Record, labels: _Labels, index: int) -> Any:
    """The record's value as its field carries it: a finite number, text, a boolean, or data
    (bytes in CBOR, base64url without padding in JSON)."""
    if record.field == "vs" and isinstance(record.value, str):
        return record.value
    if record.field == "vb" and isinstance(record.value, bool):
        return record.value
    if record.field == "vd" and isinstance(record.value, (bytes, bytearray)):
        data = bytes(record.value)
        return data if labels is _CBOR else base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")
    if record.field in _TYPED_FIELDS:
        raise SenMLError("bad_value", f"record {index}: value {record.value!r} does not fit field {record.field!r}")
    value = float(record.value)
    if not math.isfinite(value):
        raise SenMLError("non_finite", f"record {index}: value {value!r} is not finite")
    return value


# --------------------------------------------------------------------------- decode


def decode_pack(payload: bytes, *, content_type: str | None = None, now: float | None = None) -> Pack:
    """Decode and resolve a SenML pack; raise :class:`SenMLError` for anything citylab cannot store.

    ``content_type`` comes from the MQTT 5 content-type property or the topic
    suffix; when ``None`` the representation is sniffed from the first byte.
    ``now`` (UTC seconds, default the clock) is the time of reception that
    relative and zero times are resolved against.
    """
    if content_type is None:
        labels = _sniff(payload)
    else:
        labels = _labels_for(content_type)
    if labels is _CBOR:
        items = _load_cbor(payload)
    else:
        items = _load_json(payload)
    return _resolve(items, labels, _clock.time() if now is None else now)


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
    return kind is float or kind is int or kind is Decimal


def _float(value: Any) -> float:
    """A SenML number as a float (CBOR tag 4 decimal fractions arrive as Decimal)."""
    try:
        return float(value)
    except (OverflowError, ValueError, ArithmeticError):
        return math.inf


def text_problem(text: str, max_chars: int) -> str | None:
    """Why ``text`` cannot be stored as a key or label (None when it can)."""
    if len(text) > max_chars:
        return f"is {len(text)} characters long, more than {max_chars}"
    found = _UNSTORABLE.search(text)
    if found is not None:
        return f"holds the character U+{ord(found.group()):04X}, which cannot be stored"
    return None


def _version_ok(bver: Any) -> bool:
    """RFC 8428 versions 1..10, and RFC 9100 feature bits above them: only "secondary units" (26)."""
    return type(bver) is int and (1 <= bver <= 10 or bver in SUPPORTED_FEATURE_VERSIONS)


def _resolve(items: Any, L: _Labels, now: float) -> Pack:  # noqa: N803 - L reads as "labels"
    """RFC 8428 section 4.6: apply the base fields in force to each record, resolve times.

    A record holding base fields only (no name, value nor sum) is a base record: it
    changes the base fields and yields no reading. Every other record must carry
    exactly one value field (``v``, ``vs``, ``vb``, ``vd``) and/or a sum (``s``, or a
    base sum in force); its resolved name must be a valid SenML name.
    """
    if type(items) is not list:
        raise SenMLError("not_senml", "a SenML pack is an array of records")
    if not items:
        raise SenMLError("empty", "the SenML pack has no records")

    boot_id, seq = _header(items[0])

    # Label constants hoisted into locals: this loop runs ~100k times per second.
    k_bver, k_bn, k_bt, k_bu, k_bv, k_bs = L.bver, L.bn, L.bt, L.bu, L.bv, L.bs
    k_n, k_u, k_v, k_vs, k_vb, k_s, k_t, k_vd = L.n, L.u, L.v, L.vs, L.vb, L.s, L.t, L.vd
    record_keys = (k_n, k_u, k_v, k_vs, k_vb, k_s, k_t, k_vd, L.ut)
    isfinite = math.isfinite
    name_ok = _NAME.fullmatch
    valid_names: set[str] = set()  # names repeat within a pack: check each once
    valid_units: set[str | None] = {None}  # units too

    base_name = ""
    base_time = 0.0
    base_unit: str | None = None
    base_value = 0.0
    base_sum: float | None = None
    has_base_value = False
    version: Any = None
    relative = False
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
            if not _version_ok(item[k_bver]):
                raise SenMLError(
                    "unsupported_version",
                    f"record {index}: SenML version {_shown(item[k_bver])} is not supported "
                    "(1..10, or 26: RFC 9100 secondary units)",
                )
            if version is not None and item[k_bver] != version:
                raise SenMLError("unsupported_version",
                                 f"record {index}: version {item[k_bver]} differs from {version} before it "
                                 "(RFC 8428 4.4: one version per pack)")
            version = item[k_bver]
        if k_bn in item:
            base_name = item[k_bn]
            if type(base_name) is not str:
                raise SenMLError("bad_name", f"record {index}: base name must be text")
        if k_bt in item:
            bt = item[k_bt]
            if not _number(bt) or not isfinite(_float(bt)):
                raise SenMLError("bad_time", f"record {index}: base time {_shown(bt)} is not a number")
            base_time = _float(bt)
        if k_bu in item:
            base_unit = item[k_bu]
            if type(base_unit) is not str:
                raise SenMLError("bad_unit", f"record {index}: base unit must be text")
        if k_bv in item:
            bv = item[k_bv]
            if not _number(bv) or not isfinite(_float(bv)):
                raise SenMLError(
                    "non_finite", f"record {index}: base value {_shown(bv)} is not a finite number"
                )
            base_value = _float(bv)
            has_base_value = True
        if k_bs in item:
            bs = item[k_bs]
            if not _number(bs) or not isfinite(_float(bs)):
                raise SenMLError(
                    "non_finite", f"record {index}: base sum {_shown(bs)} is not a finite number"
                )
            base_sum = _float(bs)

        has_v = k_v in item
        if not has_v and not any(k in item for k in record_keys):
            continue  # a base record (RFC 8428 5.1.7): it sets base fields, holds no reading
        # ---- name
        name = item.get(k_n, "")
        if type(name) is not str:
            raise SenMLError("bad_name", f"record {index}: name must be text")
        name = base_name + name
        if name not in valid_names:
            if name_ok(name) is None:
                raise SenMLError(
                    "bad_name",
                    f"record {index}: resolved name {_shown(name)} is not a SenML name "
                    "(RFC 8428 4.5.1: A-Z a-z 0-9 - : . / _, starting with a letter or digit)",
                )
            if len(name) > NAME_MAX_CHARS:
                raise SenMLError(
                    "bad_name",
                    f"record {index}: resolved name {_shown(name)} is longer than {NAME_MAX_CHARS} characters",
                )
            valid_names.add(name)

        # ---- time (RFC 8428 4.5.3: below 2**28 relative to "now", the time of reception)
        t = item.get(k_t, 0)
        kind = type(t)
        if kind is float or kind is int:
            try:
                time = base_time + t
            except OverflowError:
                time = math.inf
        elif kind is Decimal:
            time = base_time + _float(t)
        else:
            raise SenMLError("bad_time", f"record {index}: time {_shown(t)} is not a number")
        if isfinite(time) and time < RELATIVE_TIME_LIMIT:
            relative = True
            time = now + time
        if not 0 <= time <= TIME_MAX_S:  # also false for NaN
            if isfinite(time) and time > TIME_MAX_S:
                raise SenMLError(
                    "time_out_of_range",
                    f"record {index}: resolved time {time!r} s is beyond what int64 microseconds hold",
                )
            raise SenMLError(
                "bad_time", f"record {index}: resolved time {time!r} is not a time citylab can store"
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

        # ---- values (4.5.4: a missing v or bv counts as zero; a sum exists when s or bs does)
        typed = (k_vs in item) + (k_vb in item) + (k_vd in item)
        if typed + has_v > 1:
            raise SenMLError("bad_value", f"record {index}: more than one value field")
        has_sum = base_sum is not None or k_s in item
        if has_v:
            field = k_v
        elif typed:
            field = k_vs if k_vs in item else k_vb if k_vb in item else k_vd
        elif has_sum:
            field = None
        elif has_base_value:
            field = k_v  # 4.5.4: the missing value counts as zero, the base value applies
        else:
            raise SenMLError("missing_value", f"record {index}: no value ('v', 'vs', 'vb', 'vd') nor sum")
        if field == k_v:
            value = item.get(k_v, 0)
            kind = type(value)
            if kind is float or kind is int:
                try:
                    number = value + base_value
                except OverflowError:
                    number = math.inf
            elif kind is Decimal:
                number = _float(value) + base_value
            else:
                raise SenMLError("bad_value", f"record {index}: value {_shown(value)} is not a number")
            if not isfinite(number):
                raise SenMLError("non_finite", f"record {index}: value {number!r} is not finite")
            append(Record(name, number, time, unit))
        elif field == k_vs:
            value = item[k_vs]
            if type(value) is not str:
                raise SenMLError("bad_value", f"record {index}: string value must be text")
            problem = text_problem(value, STRING_MAX_CHARS)
            if problem is not None:
                raise SenMLError("bad_value", f"record {index}: string value {problem}")
            append(Record(name, value, time, unit, "vs"))
        elif field == k_vb:
            value = item[k_vb]
            if type(value) is not bool:
                raise SenMLError("bad_value", f"record {index}: boolean value {_shown(value)} is not true/false")
            append(Record(name, value, time, unit, "vb"))
        elif field == k_vd:
            append(Record(name, _data(item[k_vd], L, index), time, unit, "vd"))
        if has_sum:
            total = item.get(k_s, 0)
            if not _number(total):
                raise SenMLError("bad_value", f"record {index}: sum {_shown(total)} is not a number")
            number = _float(total) + (base_sum if base_sum is not None else 0.0)
            if not isfinite(number):
                raise SenMLError("non_finite", f"record {index}: sum {number!r} is not finite")
            append(Record(name, number, time, unit, "s"))

    if not records:
        raise SenMLError("missing_value", "the SenML pack holds base records only")
    return Pack(boot_id, seq, tuple(records), relative)


def _data(value: Any, L: _Labels, index: int) -> bytes:  # noqa: N803
    """A data value: a CBOR byte string, or in JSON base64url without padding (RFC 8428 section 5)."""
    if L is _CBOR:
        if type(value) is not bytes:
            raise SenMLError("bad_value", f"record {index}: data value must be a byte string")
        data = value
    else:
        if type(value) is not str or _BASE64URL.fullmatch(value) is None:
            raise SenMLError("bad_value", f"record {index}: data value is not base64url text")
        try:
            data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except ValueError:
            raise SenMLError("bad_value", f"record {index}: data value is not base64url text") from None
    if len(data) > DATA_MAX_BYTES:
        raise SenMLError("bad_value", f"record {index}: data value is {len(data)} bytes, more than {DATA_MAX_BYTES}")
    return data


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

