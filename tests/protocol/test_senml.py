"""SenML packs: round trips, RFC 8428 examples, every rejection reason."""

from __future__ import annotations

import json
import math

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import SENML_CBOR, SENML_JSON, Pack, Record, SenMLError, decode_pack, encode_pack

T0 = 1_700_000_000.0

segments = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,11}", fullmatch=True)  # RFC 8428 4.5.1
units = st.one_of(st.none(), st.sampled_from(["Cel", "%RH", "ug/m3", "dB", "kWh", "count"]))
values = st.floats(allow_nan=False, allow_infinity=False)
times = st.floats(min_value=2.0**28, max_value=4e9, allow_nan=False)


@st.composite
def packs(draw: st.DrawFn) -> Pack:
    devices = draw(st.lists(segments, min_size=1, max_size=3, unique=True))
    records = draw(
        st.lists(
            st.builds(
                Record,
                name=st.builds(lambda d, q: f"{d}/{q}", st.sampled_from(devices), segments),
                value=values,
                time=times,
                unit=units,
            ),
            min_size=1,
            max_size=12,
        )
    )
    # what the schema holds: text without NUL (nor surrogates, which st.text never draws), bigint seq
    boot_id = draw(st.one_of(st.none(), st.text(st.characters(blacklist_characters="\x00"), max_size=20)))
    seq = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=2**63 - 1)))
    return Pack(boot_id, seq, tuple(records))


@pytest.mark.parametrize("content_type", [SENML_JSON, SENML_CBOR])
@settings(max_examples=150, deadline=None)
@given(pack=packs())
def test_round_trip(content_type: str, pack: Pack) -> None:
    payload = encode_pack(pack, content_type=content_type)
    for ct in (content_type, None):  # declared and sniffed
        decoded = decode_pack(payload, content_type=ct)
        assert decoded.boot_id == pack.boot_id
        assert decoded.seq == pack.seq
        assert len(decoded.records) == len(pack.records)
        for got, want in zip(decoded.records, pack.records):
            assert got.name == want.name
            assert got.unit == want.unit
            assert got.value == want.value  # exactly
            assert abs(got.time - want.time) <= 1e-6


def test_json_layout_and_grouping() -> None:
    pack = Pack(
        "b-1",
        5,
        (
            Record("air-042/pm2_5", 12.5, T0, "ug/m3"),
            Record("air-042/pm10", 20.0, T0 + 2.0, "ug/m3"),
            Record("noise-1/noise", 55.5, T0),
            Record("air-042/no2", 7.0, T0),
        ),
    )
    raw = encode_pack(pack, content_type=SENML_JSON)
    assert b" " not in raw
    assert json.loads(raw) == [
        {"bt": T0, "bid": "b-1", "seq": 5, "bn": "air-042/", "n": "pm2_5", "u": "ug/m3", "v": 12.5},
        {"n": "pm10", "u": "ug/m3", "v": 20.0, "t": 2.0},
        {"bn": "noise-1/", "n": "noise", "v": 55.5},
        {"bn": "air-042/", "n": "no2", "v": 7.0},
    ]


def test_cbor_uses_integer_labels_on_the_wire() -> None:
    pack = Pack("b", 1, (Record("d/q", 1.5, T0, "Cel"), Record("d/q", 2.5, T0 + 1)))
    raw = encode_pack(pack, content_type=SENML_CBOR)
    assert raw[0] == 0x82  # array of two records
    first = cbor2.loads(raw)[0]
    assert set(first) == {-3, -2, 0, 1, 2, "bid", "seq"}
    # Raw bytes: bn (-2) is 0x21, bt (-3) is 0x22, n (0) 0x00, u (1) 0x01, v (2) 0x02, t (6) 0x06;
    # the text labels "bn"/"bt"/"n"/"v" never appear.
    assert b"\x21\x62d/" in raw  # -2: "d/"
    assert b"\x00\x61q" in raw  # 0: "q"
    assert b"\x01\x63Cel" in raw  # 1: "Cel"
    assert b"\x02\xf9\x3e\x00" in raw  # 2: 1.5 (half float, exact)
    assert b"\x06\xf9\x3c\x00" in raw  # 6: 1.0
    assert b"\x22" in raw and b"\x63bid" in raw and b"\x63seq" in raw
    for text_label in (b"\x62bn", b"\x62bt", b"\x61v", b"\x61n", b"\x61t"):
        assert text_label not in raw


def test_rfc8428_base_fields_and_relative_t() -> None:
    # RFC 8428 section 5.1.3/5.1.4 style: base name, base time, base unit, base value.
    doc = [
        {"bn": "urn:dev:ow:10e2073a01080063/", "bt": 1.320067464e9, "bu": "%RH", "bv": 10, "v": 20},
        {"u": "lon", "v": 24.30621, "n": "lon"},
        {"u": "lat", "v": 60.07965, "n": "lat"},
        {"t": 60, "v": 20.3, "n": "hum"},
        {"bn": "other/", "bt": 1.320067500e9, "n": "x", "v": 1},
    ]
    # record 0 is named by its base name alone: a valid SenML name (ingest maps it)
    assert decode_pack(json.dumps(doc).encode()).records[0].name == "urn:dev:ow:10e2073a01080063/"

    doc[0]["n"] = "hum"
    doc[0]["bn"] = "urn:dev:ow:10e2073a01080063/"
    records = decode_pack(json.dumps(doc).encode()).records
    assert records[0] == Record("urn:dev:ow:10e2073a01080063/hum", 30.0, 1.320067464e9, "%RH")
    assert records[1] == Record("urn:dev:ow:10e2073a01080063/lon", 34.30621, 1.320067464e9, "lon")
    assert records[3].time == 1.320067524e9 and records[3].unit == "%RH"
    assert math.isclose(records[3].value, 30.3)
    assert records[4] == Record("other/x", 11.0, 1.3200675e9, "%RH")


def test_cbor_hand_written_and_header() -> None:
    doc = [
        {-2: "gw-1/", -3: T0, "bid": "boot", "seq": 3, 0: "temperature", 1: "Cel", 2: 21},
        {0: "humidity", 2: 40.5, 6: -1.5, 1: "%RH"},
        {-2: "air-9/", 0: "no2", 2: 5},
    ]
    pack = decode_pack(cbor2.dumps(doc))
    assert pack.boot_id == "boot" and pack.seq == 3
    assert pack.records == (
        Record("gw-1/temperature", 21.0, T0, "Cel"),
        Record("gw-1/humidity", 40.5, T0 - 1.5, "%RH"),
        Record("air-9/no2", 5.0, T0, None),
    )
    assert decode_pack(b"  \n" + json.dumps([{"n": "a/b", "v": 1, "t": T0}]).encode()).seq is None


def _reason(payload: bytes, content_type: str | None = None) -> str:
    with pytest.raises(SenMLError) as err:
        decode_pack(payload, content_type=content_type)
    assert str(err.value)
    return err.value.reason


def _j(doc: object) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ([], "empty"),
        ({"n": "a/b"}, "not_senml"),
        ([1], "not_senml"),
        ([{"n": "a/b", "t": T0}], "missing_value"),
        ([{"n": "a/b", "t": T0, "vs": 5}], "bad_value"),
        ([{"n": "a/b", "t": T0, "vb": 1}], "bad_value"),
        ([{"n": "a/b", "t": T0, "vd": "A+/="}], "bad_value"),
        ([{"n": "a/b", "t": T0, "v": 1, "vs": "x"}], "bad_value"),
        ([{"n": "a/b", "t": T0, "v": True}], "bad_value"),
        ([{"n": "a/b", "t": T0, "v": "1"}], "bad_value"),
        ([{"n": "a/b", "t": T0, "v": 1, "s": "1"}], "bad_value"),
        ([{"bn": "a/b"}], "missing_value"),
        ([{"n": "a/b", "v": 1, "t": "now"}], "bad_time"),
        ([{"n": "a/b", "v": 1, "t": -1e12}], "bad_time"),  # relative, before 1970
        ([{"n": "/b", "v": 1, "t": T0}], "bad_name"),
        ([{"n": "", "v": 1, "t": T0}], "bad_name"),
        ([{"n": "a/b c", "v": 1, "t": T0}], "bad_name"),
        ([{"n": "a/+", "v": 1, "t": T0}], "bad_name"),
        ([{"n": 5, "v": 1, "t": T0}], "bad_name"),
        ([{"n": "a/b", "v": 1e400, "t": T0}], "non_finite"),
        ([{"n": "a/b", "v": 1, "t": T0, "bid": 5}], "bad_header"),
        ([{"n": "a/b", "v": 1, "t": T0, "seq": -1}], "bad_header"),
        ([{"n": "a/b", "v": 1, "t": T0, "seq": 1.5}], "bad_header"),
        ([{"n": "a/b", "v": 1, "t": T0, "seq": True}], "bad_header"),
        ([{"n": "a/b", "v": 1, "t": T0}, {"n": "a/c", "v": 1, "seq": 2}], "bad_header"),
        ([{"n": "a/b", "v": 1, "t": T0, "u": 3}], "bad_unit"),
        ([{"n": "a/b", "v": 1, "t": T0, "foo_": 3}], "unsupported_label"),
        ([{"n": "a/b", "v": 1, "t": T0, "bver": 11}], "unsupported_version"),
        ([{"n": "a/b", "v": 1, "t": T0, "bver": 27}], "unsupported_version"),
        ([{"n": "a/b", "v": 1, "t": T0, "bver": 0}], "unsupported_version"),
        ([{"n": "a/b", "v": 1, "bver": 10}, {"n": "a/c", "v": 1, "bver": 26}], "unsupported_version"),
    ],
)
def test_json_rejections(doc: object, reason: str) -> None:
    assert _reason(_j(doc)) == reason


def test_error_names_record_index() -> None:
    with pytest.raises(SenMLError, match="record 2") as err:
        decode_pack(_j([{"n": "a/b", "v": 1, "bt": T0}, {"n": "a/c", "v": 2}, {"n": "-x", "v": 3}]))
    assert err.value.reason == "bad_name"


def test_cbor_rejections() -> None:
    assert _reason(cbor2.dumps([{0: "a/b", 6: T0, 2: math.nan}])) == "non_finite"
    assert _reason(cbor2.dumps([{0: "a/b", 6: T0, 2: math.inf}])) == "non_finite"
    assert _reason(cbor2.dumps([{0: "a/b", 6: T0, 2: 1, -5: -math.inf}])) == "non_finite"
    assert _reason(cbor2.dumps([{0: "a/b", 6: math.nan, 2: 1}])) == "bad_time"
    assert _reason(cbor2.dumps([{0: "a/b", 6: T0, 8: "AA"}])) == "bad_value"  # data is a byte string
    assert decode_pack(cbor2.dumps([{0: "a/b", 6: T0, 3: "text"}, {0: "a/c", 6: T0, 4: False},
                                    {0: "a/d", 6: T0, 8: b"\x00"}, {0: "a/e", 6: T0, 5: 1.0}])).records == (
        Record("a/b", "text", T0, None, "vs"), Record("a/c", False, T0, None, "vb"),
        Record("a/d", b"\x00", T0, None, "vd"), Record("a/e", 1.0, T0, None, "s"))
    assert _reason(cbor2.dumps([{0: "a/b", 6: T0, 2: 10**400}])) == "non_finite"
    assert _reason(cbor2.dumps([])) == "empty"
    assert _reason(b"\x82\x01") == "undecodable"  # truncated array
    assert _reason(cbor2.dumps([{0: "a/b", 6: T0, 2: 1}]) + b"\x00") == "undecodable"
    # Text labels are JSON labels; in CBOR they are unknown extensions: a base record, no reading.
    assert _reason(cbor2.dumps([{"n": "a/b", "t": T0, "v": 1}])) == "missing_value"


def test_undecodable_and_not_senml() -> None:
    assert _reason(b"[{") == "undecodable"
    assert _reason(b"[\xff]") == "undecodable"
    assert _reason(b"[" * 100_000) == "undecodable"
    assert _reason(b"{}") == "not_senml"
    assert _reason(b"") == "not_senml"
    assert _reason(b"hello") == "not_senml"
    assert _reason(b"[]", "text/plain") == "not_senml"
    assert _reason(b"[{}]", SENML_CBOR) == "undecodable"  # '[' is CBOR int -28, then junk
    raw = encode_pack(Pack(None, None, (Record("a/b", 1.0, T0),)), content_type=SENML_JSON)
    assert decode_pack(raw, content_type="application/senml+json; charset=utf-8").records


def test_encode_refuses_what_decode_would_reject() -> None:
    with pytest.raises(SenMLError) as err:
        encode_pack(Pack(None, None, ()))
    assert err.value.reason == "empty"
    for record, reason in [
        (Record("nodevice", 1.0, T0), "bad_name"),
        (Record("a/b", math.nan, T0), "non_finite"),
        (Record("a/b", 1.0, 12.0), "bad_time"),
    ]:
        with pytest.raises(SenMLError) as err:
            encode_pack(Pack(None, None, (record,)))
        assert err.value.reason == reason
    with pytest.raises(SenMLError) as err:
        encode_pack(Pack(None, -1, (Record("a/b", 1.0, T0),)))
    assert err.value.reason == "bad_header"


@pytest.mark.parametrize("content_type", [SENML_JSON, SENML_CBOR])
def test_typed_records_round_trip(content_type: str) -> None:
    records = (Record("d/status", "free", 1_700_000_000.0, None, "vs"),
               Record("d/open", False, 1_700_000_001.0, None, "vb"),
               Record("d/sign", b'{"text":"P"}', 1_700_000_002.0, None, "vd"),
               Record("d/count", 3.0, 1_700_000_003.0, "count"))
    decoded = decode_pack(encode_pack(Pack("b", 1, records), content_type=content_type), content_type=content_type)
    assert decoded.records == records
    with pytest.raises(SenMLError):
        encode_pack(Pack("b", 2, (Record("d/status", 1.0, 1_700_000_000.0, None, "vs"),)), content_type=content_type)
