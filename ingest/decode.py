"""From a received MQTT message to a columnar pack, or to a dead letter with its reason."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from ingest.message import Message
from protocol.errors import ProtocolError
from protocol.lorawan import decode_uplink, dedup_key, lorawan_network
from protocol.lpp import decode_lpp
from protocol.quantities import QUANTITIES
from protocol.senml import NAME_PART_MAX_CHARS, Pack, Record, decode_pack, read_identity, text_problem
from protocol.topics import observation_topic_series, parse_topic
from storage.packs import DeadLetter
from storage.integrations import Integration
from storage.registry import LoRaWANDevice, SenMLNames

__all__ = ["CONTENT_BOOT_ID", "DecodedPack", "TypedReading", "decode_message"]

LoRaWANLookup = Callable[[str], "LoRaWANDevice | None"]
#: (org, publisher) -> the declared SenML names of the publisher and the devices behind it
NamesLookup = Callable[[str, str], "tuple[SenMLNames, ...]"]
#: uplink topic -> the integration whose topic family it is in (None: an operator's bridge)
IntegrationLookup = Callable[[str], "Integration | None"]
#: series id -> (org, device, quantity, unit) of the series, or None (SensorThings create topics)
DatastreamLookup = Callable[[int], "tuple[str, str, str, str | None] | None"]

#: The boot id of a content-derived pack identity (a pack without bid/seq); reserved.
CONTENT_BOOT_ID = "~content"

_SUM_SUFFIX = "_sum"
# A resolved name that the base name covers continues with one of these (or ends there).
_SEPARATORS = (":", "/", ".")
# Quantities a record named by its base name alone gets from its unit, when no
# name is declared for it: the units RFC 8428 examples use on one name.
_UNIT_QUANTITY = {"lat": "latitude", "lon": "longitude"} | {
    unit: names[0] for unit, names in
    {u: [n for n, q in QUANTITIES.items() if q.unit == u] for u in {q.unit for q in QUANTITIES.values()}}.items()
    if len(names) == 1
}


@dataclass(frozen=True, slots=True)
class TypedReading:
    """A string, boolean or data value (SenML ``vs``, ``vb``, ``vd``) of the series ``name``."""

    name: str                   # "{device}/{quantity}"
    time_us: int
    field: str                  # "vs" | "vb" | "vd"
    value: str | bool | bytes
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class DecodedPack:
    """One pack as columns. `names` are "{device}/{quantity}", one per reading."""

    message: Message
    org: str
    device: str                 # the publisher: the device of the topic
    boot_id: str | None         # None for raw LPP uplinks, which carry no sequence
    seq: int | None
    names: list[str]
    units: list[str | None]
    time_us: np.ndarray         # int64
    value: np.ndarray           # float64
    # No edge waits for a watermark of this identity: uplinks from a LoRaWAN network
    # server, and packs whose identity is derived from their content (CONTENT_BOOT_ID).
    bridged: bool = False
    typed: tuple[TypedReading, ...] = ()

    def __len__(self) -> int:
        return len(self.names)

    @property
    def stored_count(self) -> int:
        """Numeric and typed readings together."""
        return len(self.names) + len(self.typed)


_ORG_SEGMENT = re.compile(r"[A-Za-z0-9_.:-]+")


def topic_org(topic: str) -> str | None:
    """The `{org}` of a `lab/{org}/...` topic, when it is a valid topic level."""
    parts = topic.split("/", 2)
    if len(parts) == 3 and parts[0] == "lab" and _ORG_SEGMENT.fullmatch(parts[1]):
        return parts[1]
    return None


def dead_letter(message: Message, reason: str, detail: str, device: str | None = None, *,
                org: str | None = None, boot_id: str | None = None, seq: int | None = None) -> DeadLetter:
    """`org` defaults to the organisation of a `lab/{org}/...` topic (the broker lets a
    device publish under its own prefix only); None for other topics. `boot_id` and
    `seq` when the pack's identity is known: the dead letter then accounts for it."""
    return DeadLetter(topic=message.topic, device=device, reason=reason, detail=detail, payload=message.payload,
                      org=org if org is not None else topic_org(message.topic),
                      boot_id=boot_id if seq is not None else None, seq=seq if boot_id is not None else None)


def decode_message(message: Message, *, lorawan: LoRaWANLookup | None = None,
                   senml_names: NamesLookup | None = None,
                   integration: IntegrationLookup | None = None,
                   datastream: DatastreamLookup | None = None) -> DecodedPack | DeadLetter:
    """`lorawan` finds a bridged device by DevEUI; without it LoRaWAN uplinks are refused.
    `senml_names` gives the SenML names devices declared; without it only the
    `<device>/<quantity>` convention names series. `datastream` finds the series of a
    SensorThings create topic (`_observation`); without it those are refused."""
    series_id = observation_topic_series(message.topic)
    if series_id is not None:
        return _observation(message, series_id, datastream)
    network = lorawan_network(message.topic)
    if network is not None:
        if lorawan is None:
            return dead_letter(message, "bad_topic", "LoRaWAN bridging is not enabled on this ingest")
        try:
            return _uplink(message, lorawan, integration(message.topic) if integration is not None else None)
        except ProtocolError as exc:
            return dead_letter(message, exc.reason, str(exc))
    try:
        topic = parse_topic(message.topic)
    except ProtocolError as exc:
        return dead_letter(message, exc.reason, str(exc))
    try:
        if topic.kind == "up":
            return _senml(message, topic.org, topic.device, topic.content_type or message.content_type,
                          senml_names(topic.org, topic.device) if senml_names is not None else ())
        if topic.kind == "lpp":
            return _lpp(message, topic.org, topic.device)
    except ProtocolError as exc:
        identity = read_identity(message.payload, content_type=topic.content_type or message.content_type) \
            if topic.kind == "up" else None
        boot_id, seq = identity or (None, None)
        return dead_letter(message, exc.reason, str(exc), topic.device, boot_id=boot_id, seq=seq)
    return dead_letter(message, "bad_topic", f"ingest takes up and lpp topics, not {topic.kind!r}", topic.device)


def _senml(message: Message, org: str, device: str, content_type: str | None,
           declared: tuple[SenMLNames, ...]) -> DecodedPack | DeadLetter:
    pack = decode_pack(message.payload, content_type=content_type, now=message.received_us / 1e6)
    if (pack.boot_id is None) != (pack.seq is None):
        return dead_letter(message, "bad_header", "a pack carries both 'bid' and 'seq' or neither", device)
    if pack.boot_id == CONTENT_BOOT_ID:
        return dead_letter(message, "bad_header", f"boot id {CONTENT_BOOT_ID!r} is reserved", device)
    records = pack.records
    mapped: dict[tuple[str, str | None], str] = {}  # (SenML name, unit) -> "{device}/{quantity}"
    for index, record in enumerate(records):
        key = (record.name, record.unit)
        if key not in mapped:
            series = _series_name(record.name, record.unit, device, declared)
            if series.startswith("!"):
                return dead_letter(message, "unmapped_name", f"record {index}: {series[1:]}", device,
                                   boot_id=pack.boot_id, seq=pack.seq)
            mapped[key] = series
    if all(r.field == "v" for r in records):  # the common case: numbers only
        numeric, typed = records, ()
        names = [mapped[(r.name, r.unit)] for r in records]
    else:
        numeric = tuple(r for r in records if r.field in ("v", "s"))
        names = [mapped[(r.name, r.unit)] + (_SUM_SUFFIX if r.field == "s" else "") for r in numeric]
        typed = tuple(TypedReading(mapped[(r.name, r.unit)], round(r.time * 1e6), r.field, r.value, r.unit)
                      for r in records if r.field not in ("v", "s"))
    n = len(numeric)
    units = [r.unit for r in numeric]
    times = np.fromiter((r.time for r in numeric), dtype=np.float64, count=n)
    values = np.fromiter((r.value for r in numeric), dtype=np.float64, count=n)
    boot_id, seq, derived = pack.boot_id, pack.seq, False
    if seq is None:
        boot_id, seq, derived = CONTENT_BOOT_ID, content_seq(org, device, pack), True
    return DecodedPack(
        message=message, org=org, device=device, boot_id=boot_id, seq=seq,
        names=names, units=units,
        time_us=np.rint(times * 1e6).astype(np.int64),
        value=values, bridged=derived, typed=typed,
    )


def _series_name(name: str, unit: str | None, publisher: str, declared: tuple[SenMLNames, ...]) -> str:
    """The "{device}/{quantity}" of a resolved SenML name, or "!" and why there is none.

    A device's declared base name covers a resolved name equal to it, or followed by
    ":", "/" or "."; the longest covering base wins. The rest of the name (without
    that separator) is looked up in the device's declared names, else is the
    quantity itself; a name equal to the base gets the quantity declared for ""
    (else the one its unit implies, e.g. "lat" -> latitude). Names no base covers
    follow the convention "{device}/{quantity}".
    """
    best: SenMLNames | None = None
    rest = ""
    for entry in declared:
        exact = entry.names.get(name) if entry.base_name is None else None
        if exact is not None:
            return f"{entry.device}/{exact}"
        base = entry.base_name
        if base is None or not name.startswith(base) or (best is not None and len(base) <= len(best.base_name)):
            continue
        tail = name[len(base):]
        if tail and not base.endswith(_SEPARATORS) and tail[0] not in _SEPARATORS:
            continue
        best, rest = entry, tail[1:] if tail and not base.endswith(_SEPARATORS) else tail
    if best is not None:
        quantity = best.names.get(rest) or (rest if rest else _UNIT_QUANTITY.get(unit or ""))
        if not quantity:
            return (f"!name {name!r} is the base name of device {best.device!r} but no quantity is declared "
                    f"for it (declare names[\"\"]) and its unit {unit!r} implies none")
        problem = text_problem(quantity, NAME_PART_MAX_CHARS)
        if problem is not None or "/" in quantity:
            return f"!name {name!r}: quantity {quantity[:80]!r} {problem or 'holds a /'}; declare a name for it"
        return f"{best.device}/{quantity}"
    device, _, quantity = name.partition("/")
    if device and quantity and "/" not in quantity:
        return name
    return (f"!name {name[:80]!r} is neither '<device>/<quantity>' nor covered by a SenML base name declared "
            f"by {publisher!r} or a device behind it")


def content_seq(org: str, device: str, pack: Pack) -> int:
    """The content-derived identity of a pack without bid/seq: 63 bits of SHA-256.

    Hashed: the organisation, the publishing device and every resolved record in
    order (name, unit, field, value, time in µs). A redelivered pack resolves to the
    same records, hence the same identity, as long as its times are absolute; a pack
    with relative or zero times resolves them against each reception, so a
    redelivery of it is a new pack (documented in docs/protocol.md). Two different
    packs of identical content at identical times are one pack.
    """
    digest = hashlib.sha256()
    digest.update(f"{org}\x00{device}\x00".encode())
    for r in pack.records:
        value = r.value
        raw = value if isinstance(value, bytes) else repr(value).encode()
        digest.update(f"{r.name}\x00{r.unit}\x00{r.field}\x00".encode())
        digest.update(struct.pack(">q", round(r.time * 1e6)))
        digest.update(struct.pack(">I", len(raw)) + raw)
    return int.from_bytes(digest.digest()[:8], "big") >> 1


def _uplink(message: Message, lorawan: LoRaWANLookup, integration: Integration | None) -> DecodedPack | DeadLetter:
    """An uplink bridged from The Things Stack v3 or ChirpStack v4, stamped by the network server.

    De-duplicated by (device, "lorawan:<network>", reception time in µs): frame
    counters restart when a device rejoins, reception times do not repeat.
    """
    if integration is not None and not integration.enabled:
        return dead_letter(message, "integration_disabled", f"integration {integration.id} is disabled",
                           org=integration.org)
    uplink = decode_uplink(message.topic, message.payload)
    found = lorawan(uplink.dev_eui)
    if found is None:
        return dead_letter(message, "unknown_dev_eui", f"no registered device has DevEUI {uplink.dev_eui}",
                           org=integration.org if integration is not None else None)
    if integration is not None and found.org != integration.org:
        # the DevEUI is another organisation's: say nothing of it
        return dead_letter(message, "unknown_dev_eui",
                           f"no device of organisation {integration.org!r} has DevEUI {uplink.dev_eui}",
                           org=integration.org)
    if found.channels:
        uplink = decode_uplink(message.topic, message.payload, channels=found.channels)
    if uplink.simulated:
        return dead_letter(message, "simulated_uplink",
                           "a simulated uplink (sent from the network server's console) is not a reading",
                           found.device, org=found.org)
    n = len(uplink.readings)
    if n == 0:
        return dead_letter(message, "no_readings",
                           f"the uplink's payload holds no value citylab can store ({uplink.skipped} skipped: "
                           "not numbers, numbers with an unknown unit, or invalid names)", found.device, org=found.org)
    boot_id, seq = dedup_key(uplink)

    return DecodedPack(
        message=message, org=found.org, device=found.device, boot_id=boot_id, seq=seq,
        names=[f"{found.device}/{q}" for q, _, _ in uplink.readings], units=[u for _, u, _ in uplink.readings],
        time_us=np.full(n, uplink.received_us, dtype=np.int64),
        value=np.array([v for _, _, v in uplink.readings], dtype=np.float64), bridged=True,
    )


def _lpp(message: Message, org: str, device: str) -> DecodedPack:
    """A raw Cayenne LPP uplink: one reading per value, stamped when received.

    Without a channel map in the registry, the quantity is "{kind}_{channel}".
    """
    values = decode_lpp(message.payload)
    return DecodedPack(
        message=message, org=org, device=device, boot_id=None, seq=None,
        names=[f"{device}/{v.kind}_{v.channel}" for v in values], units=[v.unit for v in values],
        time_us=np.full(len(values), message.received_us, dtype=np.int64),
        value=np.array([v.value for v in values], dtype=np.float64),
    )


def _iso_seconds(text: object, received_us: int) -> float:
    if text is None:
        return received_us / 1e6
    if not isinstance(text, str):
        raise ValueError("phenomenonTime must be an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(text.split("/")[0])
    except ValueError:
        raise ValueError(f"phenomenonTime {text[:80]!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"phenomenonTime {text[:80]!r} needs a time zone (Z or ±hh:mm)")
    return parsed.timestamp()


def _observation(message: Message, series_id: int, datastream: DatastreamLookup | None) -> DecodedPack | DeadLetter:
    """An Observation created over the SensorThings MQTT extension (OGC 18-088 §14.1).

    A device publishes one Observation on its Datastream's topic:

        v1.1/Datastreams(7)/Observations   {"result": 21.5, "phenomenonTime": "2025-03-05T10:00:00Z"}

    The broker lets a device's login publish only on the topics of its own series
    (citylab.broker_security.datastream_acls), so the topic names the series as
    `lab/{org}/{device}/up` names the device. The Observation becomes a one-reading
    pack of that series' device and goes on like any pack: authorisation against
    the registry, validation, de-duplication by a content-derived identity (the same
    Observation published again is a duplicate), dead letters, counters. Without
    `phenomenonTime` the reading is stamped when ingest received it.
    """
    if datastream is None:
        return dead_letter(message, "bad_topic", "SensorThings creation is not enabled on this ingest")
    target = datastream(series_id)
    if target is None:
        return dead_letter(message, "unknown_series", f"no Datastream {series_id}")
    org, device, quantity, unit = target
    try:
        body = json.loads(message.payload)
    except (ValueError, UnicodeDecodeError) as exc:
        return dead_letter(message, "undecodable", f"an Observation is one JSON object: {exc}", device, org=org)
    if not isinstance(body, dict):
        return dead_letter(message, "undecodable", "an Observation is one JSON object", device, org=org)
    result = body.get("result")
    if isinstance(result, float) and result != result or result in (float("inf"), float("-inf")):
        return dead_letter(message, "non_finite", "result is not a finite number", device, org=org)
    if isinstance(result, bool) or not isinstance(result, (int, float)):
        return dead_letter(message, "bad_value", f"result must be a number (OM_Measurement), not {str(result)[:80]!r}",
                           device, org=org)
    try:
        seconds = _iso_seconds(body.get("phenomenonTime"), message.received_us)
    except ValueError as exc:
        return dead_letter(message, "bad_time", str(exc), device, org=org)
    name = f"{device}/{quantity}"
    seq = content_seq(org, device, Pack(None, None, (Record(name, float(result), seconds, unit),)))
    return DecodedPack(
        message=message, org=org, device=device, boot_id=CONTENT_BOOT_ID, seq=seq, names=[name], units=[unit],
        time_us=np.array([round(seconds * 1e6)], dtype=np.int64), value=np.array([float(result)], np.float64),
        bridged=True,
    )
