"""The physical quantities citylab knows, with their SenML units and bounds.

Units are SenML unit names: primary units from the IANA registry created by
RFC 8428 (and extended by RFC 8798), or secondary units from the registry of
RFC 8798 section 3 (``ug/m3``, ``hPa``, ``kWh``, ``km/h``), which are linear
transformations of primary units and are what sensors actually report.

``low``/``high`` are *physical* bounds: a reading outside them is impossible
for a working sensor (a fault, not an anomaly of the city).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["QUANTITIES", "Quantity", "quantity"]


@dataclass(frozen=True, slots=True)
class Quantity:
    """One measurable quantity: its name in series ids, SenML unit and bounds."""

    name: str
    unit: str
    low: float
    high: float
    description: str


def _q(name: str, unit: str, low: float, high: float, description: str) -> tuple[str, Quantity]:
    return name, Quantity(name, unit, low, high, description)


QUANTITIES: dict[str, Quantity] = dict(
    [
        _q("temperature", "Cel", -50.0, 60.0, "air temperature, degrees Celsius"),
        _q("humidity", "%RH", 0.0, 100.0, "relative humidity"),
        _q("pm2_5", "ug/m3", 0.0, 1000.0, "particulate matter < 2.5 um, mass concentration"),
        _q("pm10", "ug/m3", 0.0, 2000.0, "particulate matter < 10 um, mass concentration"),
        _q("no2", "ug/m3", 0.0, 2000.0, "nitrogen dioxide, mass concentration"),
        _q(
            "noise",
            "dB",
            0.0,
            150.0,
            "A-weighted equivalent sound level LAeq, dB(A); SenML has no dB(A) unit, "
            "so the unit is dB and the A-weighting is part of the quantity",
        ),
        _q("energy", "kWh", 0.0, 1e9, "active energy, monotonic meter counter (never decreases)"),
        _q("power", "W", 0.0, 1e7, "active power"),
        _q(
            "traffic_count",
            "count",
            0.0,
            1e6,
            "vehicles or people counted during the reporting interval "
            "(SenML unit 'count', RFC 8428: counter of occurrences)",
        ),
        _q("speed", "km/h", 0.0, 300.0, "vehicle speed"),
        _q("pressure", "hPa", 300.0, 1100.0, "barometric pressure"),
        _q("illuminance", "lx", 0.0, 200_000.0, "illuminance (full sunlight is ~100 klx)"),
        _q("battery", "%EL", 0.0, 100.0, "remaining battery energy, percent (SenML %EL)"),
        _q("battery_voltage", "V", 0.0, 60.0, "battery voltage"),
        _q("co2", "ppm", 0.0, 40_000.0, "carbon dioxide, volume fraction"),
        _q("wind_speed", "m/s", 0.0, 100.0, "wind speed"),
    ]
)


def quantity(name: str) -> Quantity:
    """Return the :class:`Quantity` called ``name``.

    Raises ``KeyError`` naming the known quantities when ``name`` is unknown.
    """
    try:
        return QUANTITIES[name]
    except KeyError:
        known = ", ".join(sorted(QUANTITIES))
        raise KeyError(f"unknown quantity {name!r}; known quantities: {known}") from None
