"""MQTT topics and the committed watermark."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    INGEST_FILTERS,
    SENML_CBOR,
    SENML_JSON,
    Topic,
    TopicError,
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

segments = st.from_regex(r"[A-Za-z0-9_.:-]{1,16}", fullmatch=True)


def mqtt_matches(topic_filter: str, topic: str) -> bool:
    """Naive MQTT 3.1.1/5.0 section 4.7 matcher ('#' also matches the parent level)."""
    f, t = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True  # matches the remaining levels, including none
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


@given(segments, segments, st.integers(1, 223))
def test_round_trip(org: str, device: str, port: int) -> None:
    assert parse_topic(up_topic(org, device)) == Topic(org, device, "up", None, None)
    assert parse_topic(up_topic(org, device, suffix="json")) == Topic(org, device, "up", SENML_JSON)
    assert parse_topic(up_topic(org, device, suffix="cbor")) == Topic(org, device, "up", SENML_CBOR)
    assert parse_topic(lpp_topic(org, device, port)) == Topic(org, device, "lpp", port=port)
    for build, kind in [(status_topic, "status"), (committed_topic, "committed"), (down_topic, "down")]:
        assert parse_topic(build(org, device)) == Topic(org, device, kind)


def test_shapes() -> None:
    assert up_topic("city", "air-042") == "lab/city/air-042/up"
    assert up_topic("city", "air-042", suffix="cbor") == "lab/city/air-042/up/cbor"
    assert lpp_topic("city", "n1", 2) == "lab/city/n1/lpp/2"
    assert status_topic("o", "d") == "lab/o/d/status"
    assert committed_topic("o", "d") == "lab/o/d/committed"
    assert down_topic("o", "d") == "lab/o/d/down"


def test_ingest_filters_cover_exactly_the_ingest_topics() -> None:
    def ingested(topic: str) -> bool:
        return any(mqtt_matches(f, topic) for f in INGEST_FILTERS)

    # '#' matches its parent level: "lab/+/+/up/#" covers the bare up topic.
    assert mqtt_matches("lab/+/+/up/#", "lab/o/d/up")
    assert ingested("lab/o/d/up") and ingested("lab/o/d/up/json") and ingested("lab/o/d/up/cbor")
    assert ingested("lab/o/d/lpp/1")
    for topic in ("lab/o/d/status", "lab/o/d/committed", "lab/o/d/down", "lab/o/d/lpp"):
        assert not ingested(topic)


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "lab",
        "lab/o/d",
        "lab/o/d/up/xml",
        "lab/o/d/up/json/x",
        "lab/+/d/up",
        "lab/o/#/up",
        "lab/o//up",
        "lab/o/d/lpp",
        "lab/o/d/lpp/0",
        "lab/o/d/lpp/224",
        "lab/o/d/lpp/07",
        "lab/o/d/lpp/x",
        "lab/o/d/lpp/1/2",
        "lab/o/d/status/x",
        "lab/o/d/other",
        "lab/o/d/UP",
        "other/o/d/up",
        "/lab/o/d/up",
        "lab/o/d é/up",
    ],
)
def test_rejections(topic: str) -> None:
    with pytest.raises(TopicError) as err:
        parse_topic(topic)
    assert err.value.reason == "bad_topic"
    assert topic in str(err.value) or topic == ""


@pytest.mark.parametrize("bad", ["+", "#", "a/b", "", "$SYS", "a b"])
def test_builders_reject_wildcards(bad: str) -> None:
    with pytest.raises(TopicError):
        up_topic(bad, "d")
    with pytest.raises(TopicError):
        status_topic("o", bad)
    with pytest.raises(TopicError):
        lpp_topic("o", "d", 0)
    with pytest.raises(TopicError):
        up_topic("o", "d", suffix="xml")


@given(st.text(max_size=30), st.integers(0, 2**63))
def test_watermark_round_trip(boot_id: str, seq: int) -> None:
    w = Watermark(boot_id, seq)
    assert decode_watermark(encode_watermark(w)) == w


def test_watermark_shape_and_errors() -> None:
    assert encode_watermark(Watermark("b1", 4)) == b'{"boot_id":"b1","seq":4}'
    for payload in [b"", b"[]", b'{"boot_id":1,"seq":1}', b'{"boot_id":"b","seq":-1}',
                    b'{"boot_id":"b","seq":true}', b'{"boot_id":"b"}', b"\xff"]:
        with pytest.raises(TopicError) as err:
            decode_watermark(payload)
        assert err.value.reason == "bad_watermark"
