"""Fuzz: arbitrary bytes never raise anything but ProtocolError subclasses."""

from __future__ import annotations

import pickle

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    SENML_CBOR,
    SENML_JSON,
    ProtocolError,
    SenMLError,
    decode_lpp,
    decode_pack,
    decode_watermark,
    parse_line,
    parse_radio_line,
    parse_topic,
)

FUZZ = settings(max_examples=400, deadline=None)


def _only_protocol_errors(fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args, **kwargs)
    except ProtocolError as exc:
        assert exc.reason and str(exc)


@FUZZ
@given(st.binary(max_size=200))
def test_decoders_on_random_bytes(data: bytes) -> None:
    _only_protocol_errors(decode_pack, data)
    _only_protocol_errors(decode_pack, data, content_type=SENML_JSON)
    _only_protocol_errors(decode_pack, data, content_type=SENML_CBOR)
    _only_protocol_errors(decode_lpp, data)
    _only_protocol_errors(parse_line, data)
    _only_protocol_errors(parse_radio_line, data)
    _only_protocol_errors(decode_watermark, data)


@FUZZ
@given(st.binary(max_size=100))
def test_prefixed_random_bytes(data: bytes) -> None:
    _only_protocol_errors(decode_pack, b"\x81\xa3" + data)
    _only_protocol_errors(decode_pack, b'[{"n":' + data)
    _only_protocol_errors(parse_line, b"$CLAB," + data)
    _only_protocol_errors(parse_radio_line, b"+RCV=" + data)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=4),
    max_leaves=12,
)
senml_keys = st.sampled_from(["bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb",
                              "vd", "s", "t", "ut", "bid", "seq", "x_"])
cbor_keys = st.sampled_from([-6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, "bid", "seq"])


@FUZZ
@given(st.lists(st.dictionaries(senml_keys, json_values, max_size=6), max_size=4))
def test_structured_json(doc: list[dict[str, object]]) -> None:
    import json

    _only_protocol_errors(decode_pack, json.dumps(doc).encode())


@FUZZ
@given(st.lists(st.dictionaries(cbor_keys, json_values, max_size=6), max_size=4))
def test_structured_cbor(doc: list[dict[object, object]]) -> None:
    _only_protocol_errors(decode_pack, cbor2.dumps(doc))


@given(st.text(max_size=40))
def test_topics_on_random_text(topic: str) -> None:
    _only_protocol_errors(parse_topic, topic)


def test_errors_pickle() -> None:
    err = SenMLError("bad_name", "record 0: bad")
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is SenMLError and copy.reason == "bad_name" and str(copy) == "record 0: bad"
    assert isinstance(err, ValueError)
