"""The unit vocabulary: every quantity's unit is known, conversions are exact and reversible."""

from __future__ import annotations

import math

import numpy as np
import pytest

from protocol.quantities import QUANTITIES
from protocol.units import UNITS, UnitError, convert, convertible


def test_every_quantity_unit_is_in_the_vocabulary():
    for q in QUANTITIES.values():
        u = UNITS[q.unit]
        assert u.name and u.symbol and u.cefact
        assert u.definition.startswith("http://qudt.org/vocab/unit/")


def test_every_unit_converts_to_its_primary_unit():
    for u in UNITS.values():
        assert UNITS[u.primary].dimension == u.dimension
        assert UNITS[u.primary].scale == 1.0 and UNITS[u.primary].offset == 0.0


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (25.0, "Cel", "K", 298.15),
        (0.0, "K", "Cel", -273.15),
        (1013.25, "hPa", "Pa", 101325.0),
        (2.5e-8, "kg/m3", "ug/m3", 25.0),
        (1.5, "kW", "W", 1500.0),
        (3.6e6, "J", "kWh", 1.0),
        (2500.0, "Wh", "kWh", 2.5),
        (36.0, "km/h", "m/s", 10.0),
    ],
)
def test_conversions(value, source, target, expected):
    assert math.isclose(convert(value, source, target), expected, rel_tol=1e-12, abs_tol=1e-9)
    assert math.isclose(convert(convert(value, source, target), target, source), value, rel_tol=1e-12)


def test_arrays_convert_elementwise():
    out = convert(np.array([0.0, 100.0]), "Cel", "K")
    assert out.tolist() == [273.15, 373.15]


def test_other_dimensions_refuse():
    assert not convertible("Cel", "hPa")
    with pytest.raises(UnitError, match="cannot convert"):
        convert(1.0, "Cel", "hPa")
    with pytest.raises(UnitError, match="unknown SenML unit"):
        convert(1.0, "furlong", "m")
