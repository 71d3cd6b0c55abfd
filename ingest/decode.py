"""From a received MQTT message to a columnar pack, or to a dead letter with its reason."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ingest.message import Message
from protocol.errors import ProtocolError
from protocol.lorawan import decode_uplink, dedup_key, lorawan_network
from protocol.lpp import decode_lpp
from protocol.senml import decode_pack, read_identity
from protocol.topics import parse_topic
from storage.packs import DeadLetter
from storage.registry import LoRaWANDevice

__all__ = ["DecodedPack", "decode_message"]

LoRaWANLookup = Callable[[str], "LoRaWANDevice | None"]


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
    bridged: bool = False       # from a LoRaWAN network server: no edge waits for a watermark

    def __len__(self) -> int:
        return len(self.names)


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


def decode_message(message: Message, *, lorawan: LoRaWANLookup | None = None) -> DecodedPack | DeadLetter:
    """`lorawan` finds a bridged device by DevEUI; without it LoRaWAN uplinks are refused."""
    network = lorawan_network(message.topic)
    if network is not None:
        if lorawan is None:
            return dead_letter(message, "bad_topic", "LoRaWAN bridging is not enabled on this ingest")
        try:
            return _uplink(message, lorawan)
        except ProtocolError as exc:
            return dead_letter(message, exc.reason, str(exc))
    try:
        topic = parse_topic(message.topic)
    except ProtocolError as exc:
        return dead_letter(message, exc.reason, str(exc))
    try:
        if topic.kind == "up":
            return _senml(message, topic.org, topic.device, topic.content_type or message.content_type)
        if topic.kind == "lpp":
            return _lpp(message, topic.org, topic.device)
    except ProtocolError as exc:
        identity = read_identity(message.payload, content_type=topic.content_type or message.content_type) \
            if topic.kind == "up" else None
        boot_id, seq = identity or (None, None)
        return dead_letter(message, exc.reason, str(exc), topic.device, boot_id=boot_id, seq=seq)
    return dead_letter(message, "bad_topic", f"ingest takes up and lpp topics, not {topic.kind!r}", topic.device)


def _senml(message: Message, org: str, device: str, content_type: str | None) -> DecodedPack | DeadLetter:
    pack = decode_pack(message.payload, content_type=content_type)
    if (pack.boot_id is None) != (pack.seq is None):
        return dead_letter(message, "bad_header", "a pack carries both 'bid' and 'seq' or neither", device)
    records = pack.records
    times = np.fromiter((r.time for r in records), dtype=np.float64, count=len(records))
    return DecodedPack(
        message=message, org=org, device=device, boot_id=pack.boot_id, seq=pack.seq,
        names=[r.name for r in records], units=[r.unit for r in records],
        time_us=np.rint(times * 1e6).astype(np.int64),
        value=np.fromiter((r.value for r in records), dtype=np.float64, count=len(records)),
    )


def _uplink(message: Message, lorawan: LoRaWANLookup) -> DecodedPack | DeadLetter:
    """An uplink bridged from The Things Stack v3 or ChirpStack v4, stamped by the network server.

    De-duplicated by (device, "lorawan:<network>", reception time in µs): frame
    counters restart when a device rejoins, reception times do not repeat.
    """
    uplink = decode_uplink(message.topic, message.payload)
    found = lorawan(uplink.dev_eui)
    if found is None:
        return dead_letter(message, "unknown_dev_eui", f"no registered device has DevEUI {uplink.dev_eui}")
    if found.channels:
        uplink = decode_uplink(message.topic, message.payload, channels=found.channels)
    boot_id, seq = dedup_key(uplink)
    n = len(uplink.readings)

    return DecodedPack(
        message=message, org=found.org, device=found.device, boot_id=boot_id, seq=seq,
        names=[f"{found.device}/{q}" for q, _, _ in uplink.readings], units=[u for _, u, _ in uplink.readings],
        time_us=np.full(n, round(uplink.received_at * 1e6), dtype=np.int64),
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
