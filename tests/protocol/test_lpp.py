"""Cayenne LPP: documented frames, round trips, errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import LPP_KINDS, LppError, LppValue, decode_lpp, encode_lpp


def _decode(hex_text: str) -> tuple[LppValue, ...]:
    return decode_lpp(bytes.fromhex(hex_text))


def test_documented_examples() -> None:
    # Examples from the Cayenne LPP documentation (myDevices).
    assert _decode("03 67 01 10 05 67 00 FF") == (
        LppValue(3, "temperature", "Cel", 27.2),
        LppValue(5, "temperature", "Cel", 25.5),
    )
    assert _decode("01 67 FF D7") == (LppValue(1, "temperature", "Cel", -4.1),)
    assert _decode("06 71 04 D2 FB 2E 00 00") == (
        LppValue(6, "accelerometer_x", None, 1.234),
        LppValue(6, "accelerometer_y", None, -1.234),
        LppValue(6, "accelerometer_z", None, 0.0),
    )
    assert _decode("01 88 06 76 5f f2 96 0a 00 03 e8") == (
        LppValue(1, "gps_latitude", "lat", 42.3519),
        LppValue(1, "gps_longitude", "lon", -87.9094),
        LppValue(1, "gps_altitude", "m", 10.0),
    )


@pytest.mark.parametrize(
    ("hex_text", "kind", "unit", "value"),
    [
        ("00 00 01", "digital_input", None, 1.0),
        ("00 01 00", "digital_output", None, 0.0),
        ("00 02 FF 9C", "analog_input", None, -1.0),
        ("00 03 27 10", "analog_output", None, 100.0),
        ("00 65 01 F4", "illuminance", "lx", 500.0),
        ("00 66 01", "presence", None, 1.0),
        ("00 68 61", "humidity", "%RH", 48.5),
        ("00 73 27 95", "barometric_pressure", "hPa", 1013.3),
        ("00 74 01 2C", "voltage", "V", 3.0),
        ("00 75 03 E8", "current", "A", 1.0),
        ("00 76 00 00 01 F4", "frequency", "Hz", 500.0),
        ("00 78 64", "percentage", "%", 100.0),
        ("00 79 FF 9C", "altitude", "m", -100.0),
        ("00 7D 01 90", "concentration", "ppm", 400.0),
        ("00 80 05 DC", "power", "W", 1500.0),
        ("00 82 00 00 30 39", "distance", "m", 12.345),
        ("00 83 00 01 E2 40", "energy", "kWh", 123.456),
        ("00 84 01 0E", "direction", "deg", 270.0),
        ("00 85 65 53 F1 00", "unix_time", "s", 1700000000.0),
        ("00 8E 01", "switch", None, 1.0),
    ],
)
def test_single_value_types(hex_text: str, kind: str, unit: str | None, value: float) -> None:
    assert _decode(hex_text) == (LppValue(0, kind, unit, value),)
    assert LPP_KINDS[kind] == unit


def test_gyrometer() -> None:
    assert [v.value for v in _decode("02 86 00 64 FF 9C 00 00")] == [1.0, -1.0, 0.0]
    assert [v.kind for v in _decode("02 86 00 64 FF 9C 00 00")] == [
        "gyrometer_x",
        "gyrometer_y",
        "gyrometer_z",
    ]


def test_encode_documented_frame() -> None:
    assert encode_lpp([(3, "temperature", 27.2), (5, "temperature", 25.5)]) == bytes.fromhex(
        "03670110056700FF"
    )
    assert encode_lpp([(1, "temperature", -4.1)]) == bytes.fromhex("0167FFD7")


ENCODABLE = {
    "temperature": (-3276.8, 3276.7, 0.1),
    "humidity": (0.0, 127.5, 0.5),
    "barometric_pressure": (0.0, 6553.5, 0.1),
    "illuminance": (0.0, 65535.0, 1.0),
    "analog_input": (-327.68, 327.67, 0.01),
    "digital_input": (0.0, 255.0, 1.0),
    "concentration": (0.0, 65535.0, 1.0),
    "percentage": (0.0, 100.0, 1.0),
    "voltage": (0.0, 655.35, 0.01),
    "energy": (0.0, 4294967.295, 0.001),
    "power": (0.0, 65535.0, 1.0),
}


@st.composite
def items(draw: st.DrawFn) -> tuple[int, str, float]:
    kind = draw(st.sampled_from(sorted(ENCODABLE)))
    low, high, step = ENCODABLE[kind]
    steps = draw(st.integers(round(low / step), round(high / step)))
    return draw(st.integers(0, 255)), kind, steps * step


@given(st.lists(items(), min_size=1, max_size=10))
def test_round_trip(values: list[tuple[int, str, float]]) -> None:
    decoded = decode_lpp(encode_lpp(values))
    assert len(decoded) == len(values)
    for got, (channel, kind, value) in zip(decoded, values):
        assert (got.channel, got.kind, got.unit) == (channel, kind, LPP_KINDS[kind])
        assert got.value == pytest.approx(value, abs=ENCODABLE[kind][2] / 2)


def test_errors() -> None:
    cases = [
        ("", "empty"),
        ("03", "truncated"),
        ("03 67 01", "truncated"),
        ("03 67 01 10 05", "truncated"),
        ("01 88 06 76 5f f2 96 0a 00 03", "truncated"),
        ("03 67 01 10 05 AA 00", "unknown_lpp_type"),
    ]
    for hex_text, reason in cases:
        with pytest.raises(LppError) as err:
            _decode(hex_text)
        assert err.value.reason == reason, hex_text
    with pytest.raises(LppError, match="0xAA.*|offset 5") as err:
        _decode("03 67 01 10 05 AA 00")
    assert "0xAA" in str(err.value) and "offset 5" in str(err.value)


def test_encode_errors() -> None:
    for values, reason in [
        ([(0, "temperature", 5000.0)], "out_of_range"),
        ([(0, "humidity", -1.0)], "out_of_range"),
        ([(0, "temperature", float("nan"))], "out_of_range"),
        ([(256, "temperature", 1.0)], "bad_channel"),
        ([(0, "accelerometer_x", 1.0)], "unknown_kind"),
        ([(0, "smell", 1.0)], "unknown_kind"),
    ]:
        with pytest.raises(LppError) as err:
            encode_lpp(values)
        assert err.value.reason == reason
