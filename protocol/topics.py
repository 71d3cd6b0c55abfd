"""citylab MQTT topics and the committed watermark payload.

::

    lab/{org}/{device}/up            SenML pack, content type from MQTT 5 property or sniffed
    lab/{org}/{device}/up/json       SenML JSON pack
    lab/{org}/{device}/up/cbor       SenML CBOR pack
    lab/{org}/{device}/lpp/{port}    raw Cayenne LPP frame, port 1..223
    lab/{org}/{device}/status        retained JSON status, also the MQTT will
    lab/{org}/{device}/committed     retained JSON watermark (see :class:`Watermark`)
    lab/{org}/{device}/down          commands to the device

The SensorThings MQTT extension (OGC 18-088 §14) on the same broker::

    v1.1/Datastreams({series id})/Observations        a Datastream's new Observations; a device
                                                     publishes an Observation here to create it
    v1.1/FeaturesOfInterest({thing id})/Observations  a located device's new Observations
    v1.1/Things({thing id})/Datastreams               a device's new Datastreams

``org`` and ``device`` are one topic level each of ``[A-Za-z0-9_.:-]+``: no
MQTT wildcard (``+``, ``#``), no ``/``, no ``$`` prefix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from protocol.errors import TopicError
from protocol.senml import SENML_CBOR, SENML_JSON

__all__ = [
    "INGEST_FILTERS",
    "STA_CREATE_FILTER",
    "STA_FEED_PROPERTY",
    "STA_VERSION",
    "feature_topic",
    "observation_topic",
    "observation_topic_series",
    "thing_datastreams_topic",
    "ingest_filters",
    "Topic",
    "MAX_RANGES",
    "Watermark",
    "committed_topic",
    "decode_watermark",
    "down_topic",
    "encode_watermark",
    "lpp_topic",
    "parse_topic",
    "seq_ranges",
    "status_topic",
    "up_topic",
]

ROOT = "lab"

# What ingest subscribes to. MQTT 3.1.1 section 4.7.1.2 and MQTT 5.0 section
# 4.7.1.2: "#" also matches the parent level, so "sport/tennis/#" matches
# "sport/tennis" too. Hence "lab/+/+/up/#" covers "lab/o/d/up" as well as
# "lab/o/d/up/json" and "lab/o/d/up/cbor" (checked in tests/protocol/test_topics.py).
# Observations created over the SensorThings MQTT extension (a device publishes on its
# Datastream's topic); ingest subscribes with No Local, so its own feed does not come back.
STA_VERSION = "v1.1"
STA_CREATE_FILTER = f"{STA_VERSION}/+/Observations"
# The MQTT 5 user property on every message of citylab's own SensorThings feed (QoS 0): ingest
# never takes such a QoS 0 message for a device's Observation (the API's feed is another connection).
STA_FEED_PROPERTY = ("citylab", "feed")
INGEST_FILTERS: tuple[str, ...] = ("lab/+/+/up/#", "lab/+/+/lpp/+", STA_CREATE_FILTER)

_SEGMENT = re.compile(r"[A-Za-z0-9_.:-]+")
_SUFFIXES = {"json": SENML_JSON, "cbor": SENML_CBOR}
_PLAIN_KINDS = frozenset({"status", "committed", "down"})
LPP_PORTS = range(1, 224)  # LoRaWAN application ports


def ingest_filters(org: str | None = None) -> tuple[str, ...]:
    """INGEST_FILTERS, or the same narrowed to one organisation (a shard of the lab; the
    SensorThings create topics name no organisation, so a shard leaves them to a whole-lab worker)."""
    if org is None:
        return INGEST_FILTERS
    if not _SEGMENT.fullmatch(org):
        raise TopicError("bad_topic", f"organisation {org!r} is not a valid topic segment")
    return tuple(f.replace("lab/+/", f"{ROOT}/{org}/", 1) for f in INGEST_FILTERS if f != STA_CREATE_FILTER)


def observation_topic(series_id: int) -> str:
    """The SensorThings topic of a Datastream's new Observations."""
    return f"{STA_VERSION}/Datastreams({int(series_id)})/Observations"


def thing_datastreams_topic(thing_id: int) -> str:
    """The SensorThings topic of a Thing's new Datastreams."""
    return f"{STA_VERSION}/Things({int(thing_id)})/Datastreams"


def feature_topic(feature_id: int) -> str:
    """The SensorThings topic of a FeatureOfInterest's new Observations."""
    return f"{STA_VERSION}/FeaturesOfInterest({int(feature_id)})/Observations"


_DATASTREAM_OBSERVATIONS = re.compile(rf"{re.escape(STA_VERSION)}/Datastreams\((\d{{1,18}})\)/Observations")


def observation_topic_series(topic: str) -> int | None:
    """The series id of a `v1.1/Datastreams(id)/Observations` topic, else None."""
    found = _DATASTREAM_OBSERVATIONS.fullmatch(topic)
    return int(found[1]) if found else None


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed citylab topic; ``content_type`` only for ``up/json|cbor``, ``port`` only for lpp."""

    org: str
    device: str
    kind: str  # "up" | "lpp" | "status" | "committed" | "down"
    content_type: str | None = None
    port: int | None = None


def _prefix(org: str, device: str) -> str:
    for label, value in (("org", org), ("device", device)):
        if not isinstance(value, str) or _SEGMENT.fullmatch(value) is None:
            raise TopicError(
                "bad_topic", f"{label} {value!r} is not one topic level of [A-Za-z0-9_.:-]+"
            )
    return f"{ROOT}/{org}/{device}"


def up_topic(org: str, device: str, *, suffix: str | None = None) -> str:
    """``lab/{org}/{device}/up``, or ``.../up/json`` / ``.../up/cbor`` with ``suffix``."""
    topic = f"{_prefix(org, device)}/up"
    if suffix is None:
        return topic
    if suffix not in _SUFFIXES:
        raise TopicError("bad_topic", f"up suffix {suffix!r} is not 'json' or 'cbor'")
    return f"{topic}/{suffix}"


def lpp_topic(org: str, device: str, port: int) -> str:
    """``lab/{org}/{device}/lpp/{port}`` with ``port`` 1..223."""
    if type(port) is not int or port not in LPP_PORTS:
        raise TopicError("bad_topic", f"LPP port {port!r} is not 1..223")
    return f"{_prefix(org, device)}/lpp/{port}"


def status_topic(org: str, device: str) -> str:
    return f"{_prefix(org, device)}/status"


def committed_topic(org: str, device: str) -> str:
    return f"{_prefix(org, device)}/committed"


def down_topic(org: str, device: str) -> str:
    return f"{_prefix(org, device)}/down"


def parse_topic(topic: str) -> Topic:
    """Parse a citylab topic; raise :class:`TopicError` (``bad_topic``) for anything else."""
    parts = topic.split("/")
    n = len(parts)
    if n < 4 or parts[0] != ROOT:
        raise TopicError("bad_topic", f"topic {topic!r} is not lab/<org>/<device>/<kind>[/...]")
    _, org, device, kind = parts[:4]
    if _SEGMENT.fullmatch(org) is None or _SEGMENT.fullmatch(device) is None:
        raise TopicError(
            "bad_topic", f"topic {topic!r}: org and device must be [A-Za-z0-9_.:-]+"
        )
    if kind == "up":
        if n == 4:
            return Topic(org, device, "up")
        if n == 5 and parts[4] in _SUFFIXES:
            return Topic(org, device, "up", _SUFFIXES[parts[4]])
        raise TopicError("bad_topic", f"topic {topic!r}: 'up' may only be followed by json or cbor")
    if kind == "lpp":
        if n == 5:
            port_text = parts[4]
            # Canonical decimal only: "07" or "+7" would make two topics for one port.
            if port_text.isdigit() and port_text.isascii() and str(int(port_text)) == port_text:
                port = int(port_text)
                if port in LPP_PORTS:
                    return Topic(org, device, "lpp", port=port)
        raise TopicError("bad_topic", f"topic {topic!r}: expected lpp/<port 1..223>")
    if kind in _PLAIN_KINDS and n == 4:
        return Topic(org, device, kind)
    raise TopicError(
        "bad_topic",
        f"topic {topic!r}: kind must be up, lpp/<port>, status, committed or down",
    )


#: Ranges one watermark message names at most; packs beyond are named by a later one.
MAX_RANGES = 256


@dataclass(frozen=True, slots=True)
class Watermark:
    """What the platform has committed of one boot of a device.

    Every pack with this ``boot_id`` and a seq <= ``seq`` is committed (``seq`` is -1
    when seq 0 is not committed yet), and so is every pack whose seq lies in one of
    ``ranges``, inclusive ``(low, high)`` pairs above ``seq``. ``seq`` never passes a
    pack the platform has not stored: a hole (a pack the broker dropped) holds it back
    until the pack arrives again, while ``ranges`` name what this commit stored beyond.
    """

    boot_id: str
    seq: int
    ranges: tuple[tuple[int, int], ...] = ()

    def covers(self, seq: int) -> bool:
        return seq <= self.seq or any(low <= seq <= high for low, high in self.ranges)


def seq_ranges(seqs: list[int]) -> tuple[tuple[int, int], ...]:
    """Sorted, merged inclusive ranges of ``seqs`` (the lowest ``MAX_RANGES`` of them)."""
    out: list[list[int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        elif len(out) < MAX_RANGES:
            out.append([s, s])
        else:
            break
    return tuple((low, high) for low, high in out)


def _valid_seq(value: object) -> bool:
    return type(value) is int and value >= 0


def encode_watermark(w: Watermark) -> bytes:
    """Compact JSON: ``{"boot_id":"...","seq":N}``, with ``"ranges":[[lo,hi],...]`` when
    there are any; ``"seq"`` is left out when it is -1 (then ranges are required)."""
    if not isinstance(w.boot_id, str) or type(w.seq) is not int or w.seq < -1 or (w.seq == -1 and not w.ranges):
        raise TopicError("bad_watermark", f"invalid watermark {w!r}")
    if any(not (_valid_seq(lo) and _valid_seq(hi) and w.seq < lo <= hi) for lo, hi in w.ranges):
        raise TopicError("bad_watermark", f"invalid watermark ranges {w.ranges!r}")
    data: dict[str, object] = {"boot_id": w.boot_id}
    if w.seq >= 0:
        data["seq"] = w.seq
    if w.ranges:
        data["ranges"] = [[lo, hi] for lo, hi in w.ranges]
    return json.dumps(data, separators=(",", ":")).encode()


def decode_watermark(payload: bytes) -> Watermark:
    """Decode a committed watermark; raise :class:`TopicError` (``bad_watermark``)."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise TopicError("bad_watermark", f"watermark is not JSON: {exc}") from None
    if type(data) is not dict:
        raise TopicError("bad_watermark", "watermark must be a JSON object")
    boot_id = data.get("boot_id")
    if type(boot_id) is not str:
        raise TopicError("bad_watermark", f"watermark boot_id {boot_id!r} is not text")
    raw = data.get("ranges", [])
    if type(raw) is not list or any(type(r) is not list or len(r) != 2 for r in raw):
        raise TopicError("bad_watermark", "watermark ranges must be a list of [low, high] pairs")
    ranges = tuple((r[0], r[1]) for r in raw)
    if "seq" in data or not ranges:
        seq = data.get("seq")
        if not _valid_seq(seq):
            raise TopicError("bad_watermark", f"watermark seq {seq!r} is not a non-negative int")
    else:
        seq = -1
    if any(not (_valid_seq(lo) and _valid_seq(hi) and seq < lo <= hi) for lo, hi in ranges):
        raise TopicError("bad_watermark", f"watermark ranges {raw!r}: need seq < low <= high")
    return Watermark(boot_id, seq, ranges)
