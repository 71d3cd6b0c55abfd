"""citylab serial lines: round trip, checksum, truncation, garbage."""

from __future__ import annotations

import functools
import operator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import LineError, SensorLine, checksum, format_line, parse_line

sensor_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,16}", fullmatch=True)
quantities = st.from_regex(r"[a-z0-9_]{1,12}", fullmatch=True)
values = st.floats(allow_nan=False, allow_infinity=False)
field_maps = st.dictionaries(quantities, values, min_size=1, max_size=6)


def naive_checksum(body: bytes) -> int:
    return functools.reduce(operator.xor, body, 0)


@given(st.binary(max_size=300))
def test_checksum_matches_naive_twin(body: bytes) -> None:
    assert checksum(body) == naive_checksum(body)


def test_known_line() -> None:
    line = format_line("s1", 3, {"temperature": 21.5, "humidity": 40.0})
    assert line == b"$CLAB,s1,3,temperature=21.5,humidity=40.0*0A\r\n"
    assert naive_checksum(b"CLAB,s1,3,temperature=21.5,humidity=40.0") == 0x0A
    expected = SensorLine("s1", 3, (("temperature", 21.5), ("humidity", 40.0)))
    assert parse_line(line) == expected
    assert parse_line(line[:-2]) == expected  # without "\r\n"
    assert parse_line(line[:-1]) == expected  # "\r" alone
    assert parse_line(b"$CLAB,s1,3,temperature=21.5,humidity=40.0*0a") == expected


@given(sensor_ids, st.integers(min_value=0, max_value=2**64), field_maps)
def test_round_trip(sensor_id: str, seq: int, fields: dict[str, float]) -> None:
    parsed = parse_line(format_line(sensor_id, seq, fields))
    assert parsed == SensorLine(sensor_id, seq, tuple(fields.items()))


@given(sensor_ids, st.integers(min_value=0, max_value=10**6), field_maps)
def test_every_truncation_is_a_line_error(
    sensor_id: str, seq: int, fields: dict[str, float]
) -> None:
    line = format_line(sensor_id, seq, fields)
    for cut in range(len(line) - 2):  # cutting only "\r\n" leaves a valid line
        with pytest.raises(LineError) as err:
            parse_line(line[:cut])
        assert err.value.reason in {"truncated", "bad_checksum", "garbage"}


@given(sensor_ids, field_maps, st.data())
def test_single_byte_corruption_is_detected(
    sensor_id: str, fields: dict[str, float], data: st.DataObject
) -> None:
    line = bytearray(format_line(sensor_id, 1, fields))
    pos = data.draw(st.integers(1, len(line) - 3))
    new = data.draw(st.integers(0x20, 0x7E).filter(lambda b: b != line[pos]))
    line[pos] = new
    with pytest.raises(LineError):
        parse_line(bytes(line))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "truncated"),
        (b"$CL", "truncated"),
        (b"xx$CLAB,s,1,a=1*00", "garbage"),
        (b"$GPGGA,1*00", "garbage"),
        (b"$CLAB,s\xff,1,a=1*00", "garbage"),
        (b"$CLAB,s,1,a=1", "truncated"),
        (b"$CLAB,s,1,a=1*0", "truncated"),
        (b"$CLAB,s,1,a=1*00", "bad_checksum"),
        (b"$CLAB,s,1,a=1*ZZ", "bad_checksum"),
        (b"$CLAB,s,1,a=1*000", "bad_checksum"),
    ],
)
def test_framing_errors(line: bytes, reason: str) -> None:
    with pytest.raises(LineError) as err:
        parse_line(line)
    assert err.value.reason == reason


def _signed(body: bytes) -> bytes:
    return b"$%b*%02X" % (body, naive_checksum(body))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"CLAB,s,1", "truncated"),
        (b"CLAB,s,1,", "bad_field"),
        (b"CLAB,s/x,1,a=1", "bad_field"),
        (b"CLAB,s,-1,a=1", "bad_field"),
        (b"CLAB,s,1.5,a=1", "bad_field"),
        (b"CLAB,s,1,A=1", "bad_field"),
        (b"CLAB,s,1,a=nan", "bad_field"),
        (b"CLAB,s,1,a=inf", "bad_field"),
        (b"CLAB,s,1,a= 1", "bad_field"),
        (b"CLAB,s,1,a=1_0", "bad_field"),
        (b"CLAB,s,1,a=1e999", "bad_field"),
        (b"CLAB,s,1,a", "bad_field"),
        (b"CLAB,s,1,a=1,a=2", "bad_field"),
        (b"CLAB,,1,a=1", "bad_field"),
    ],
)
def test_field_errors(body: bytes, reason: str) -> None:
    with pytest.raises(LineError) as err:
        parse_line(_signed(body))
    assert err.value.reason == reason


def test_format_refuses_bad_input() -> None:
    for args in [
        ("s 1", 1, {"a": 1.0}),
        ("s", -1, {"a": 1.0}),
        ("s", 1, {}),
        ("s", 1, {"A": 1.0}),
        ("s", 1, {"a": float("inf")}),
    ]:
        with pytest.raises(LineError):
            format_line(*args)
