"""UART LoRa module lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import RadioError, RadioFrame, format_rcv, format_send, parse_radio_line


def test_known_lines() -> None:
    frame = RadioFrame(12, bytes.fromhex("0167FFD7"), -41, 9.5)
    assert format_rcv(frame) == b"+RCV=12,4,0167FFD7,-41,9.5\r\n"
    assert parse_radio_line(b"+RCV=12,4,0167FFD7,-41,9.5\r\n") == frame
    assert parse_radio_line(b"+RCV=12,4,0167ffd7,-41,-3") == RadioFrame(
        12, bytes.fromhex("0167FFD7"), -41, -3.0
    )
    assert format_send(7, b"\x01\x02") == b"AT+SEND=7,2,0102\r\n"


@pytest.mark.parametrize("line", [b"+OK\r\n", b"+READY\r\n", b"+ERR=4\r\n", b"+OK"])
def test_status_lines_are_skipped(line: bytes) -> None:
    assert parse_radio_line(line) is None


@given(
    st.builds(
        RadioFrame,
        address=st.integers(0, 65535),
        payload=st.binary(max_size=240),
        rssi=st.integers(-164, 0),
        snr=st.floats(-30, 30, allow_nan=False).map(lambda x: round(x, 1)),
    )
)
def test_round_trip(frame: RadioFrame) -> None:
    assert parse_radio_line(format_rcv(frame)) == frame


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"hello", "garbage"),
        (b"", "truncated"),
        (b"+RC", "truncated"),
        (b"+RCV=12,4,0167FFD7,-41", "truncated"),
        (b"+RCV=12,4,0167FFD7,-41,9.5,1", "garbage"),
        (b"+RCV=70000,4,0167FFD7,-41,9.5", "garbage"),
        (b"+RCV=x,4,0167FFD7,-41,9.5", "garbage"),
        (b"+RCV=12,5,0167FFD7,-41,9.5", "bad_length"),
        (b"+RCV=12,x,0167FFD7,-41,9.5", "bad_length"),
        (b"+RCV=12,4,0167FFZ7,-41,9.5", "bad_hex"),
        (b"+RCV=12,4,0167FFD,-41,9.5", "bad_hex"),
        (b"+RCV=12,4,0167FFD7,-4x,9.5", "garbage"),
        (b"+RCV=12,4,0167FFD7,-41,nan", "garbage"),
    ],
)
def test_errors(line: bytes, reason: str) -> None:
    with pytest.raises(RadioError) as err:
        parse_radio_line(line)
    assert err.value.reason == reason


def test_format_errors() -> None:
    with pytest.raises(RadioError):
        format_send(70000, b"x")
    with pytest.raises(RadioError):
        format_send(1, b"x" * 241)
