"""Quantities and the purity of the protocol package."""

from __future__ import annotations

import subprocess
import sys

import pytest

from protocol import QUANTITIES, quantity


def test_required_quantities() -> None:
    expected = {
        "temperature": "Cel",
        "humidity": "%RH",
        "pm2_5": "ug/m3",
        "pm10": "ug/m3",
        "no2": "ug/m3",
        "noise": "dB",
        "energy": "kWh",
        "power": "W",
        "traffic_count": "count",
        "speed": "km/h",
        "pressure": "hPa",
        "illuminance": "lx",
        "battery": "%EL",
    }
    for name, unit in expected.items():
        q = quantity(name)
        assert q.name == name and q.unit == unit and q.low < q.high and q.description
    assert quantity("temperature").low == -50 and quantity("temperature").high == 60
    assert all(q.name == name for name, q in QUANTITIES.items())


def test_unknown_quantity() -> None:
    with pytest.raises(KeyError, match="unknown quantity 'smell'.*temperature"):
        quantity("smell")


def test_protocol_imports_only_stdlib_and_cbor2() -> None:
    code = (
        "import sys, protocol; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'numpy', 'numba', 'psycopg', 'paho', 'aiomqtt', 'fastapi', 'pydantic'}); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_quantity_theme_is_a_known_eu_data_theme() -> None:
    from protocol.quantities import THEME_SCHEME, THEMES

    for q in QUANTITIES.values():
        theme = THEMES[q.theme]
        assert theme.uri == q.theme_uri and theme.uri.startswith(THEME_SCHEME + "/")
        assert theme.label_en and theme.label_nb


def test_air_quality_classes_cover_zero_to_infinity_in_the_quantity_unit() -> None:
    from protocol.quantities import AIR_QUALITY_CLASSES, LABELS_NB

    assert set(LABELS_NB) == set(QUANTITIES)
    for name, classes in AIR_QUALITY_CLASSES.items():
        assert QUANTITIES[name].unit == "ug/m3"
        assert classes[0].low == 0.0 and classes[-1].high is None
        assert all(a.high == b.low for a, b in zip(classes, classes[1:]))
    assert [c.low for c in AIR_QUALITY_CLASSES["pm10"]] == [0.0, 60.0, 120.0, 400.0]
