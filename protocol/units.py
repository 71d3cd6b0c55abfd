"""The SenML units citylab knows: what each means in every standard we speak.

One row per SenML unit name (RFC 8428's registry, RFC 8798's secondary units):
its human name and symbol (SensorThings ``unitOfMeasurement``), a definition URI
(QUDT's unit vocabulary), the UN/CEFACT Recommendation 20 common code (NGSI-LD
``unitCode``, Smart Data Models), and how it converts to the primary unit of its
dimension: ``primary = value * scale + offset``. Two units convert into each
other when they share a dimension (``ug/m3`` and ``kg/m3``, ``hPa`` and ``Pa``,
``Cel`` and ``K``).

Every face reads units from here; none keeps a mapping of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UNITS", "Unit", "UnitError", "convert", "convertible", "unit"]

_QUDT = "http://qudt.org/vocab/unit/"


class UnitError(ValueError):
    """A unit is unknown, or two units do not share a dimension."""


@dataclass(frozen=True, slots=True)
class Unit:
    senml: str          # the SenML unit name, e.g. "ug/m3"
    name: str           # e.g. "microgram per cubic metre"
    symbol: str         # e.g. "µg/m³"
    definition: str     # a URI that defines the unit
    cefact: str         # UN/CEFACT common code, e.g. "GQ"
    dimension: str      # units of one dimension convert into each other
    primary: str        # the SenML primary unit of the dimension
    scale: float = 1.0  # primary = value * scale + offset
    offset: float = 0.0


def _u(
    senml: str, name: str, symbol: str, qudt: str, cefact: str, dimension: str, primary: str,
    scale: float = 1.0, offset: float = 0.0,
) -> tuple[str, Unit]:
    return senml, Unit(senml, name, symbol, _QUDT + qudt, cefact, dimension, primary, scale, offset)


UNITS: dict[str, Unit] = dict(
    [
        # temperature
        _u("K", "kelvin", "K", "K", "KEL", "temperature", "K"),
        _u("Cel", "degree Celsius", "°C", "DEG_C", "CEL", "temperature", "K", 1.0, 273.15),
        # ratios
        _u("/", "ratio", "1", "UNITLESS", "C62", "ratio", "/"),
        _u("%", "percent", "%", "PERCENT", "P1", "ratio", "/", 0.01),
        _u("%RH", "percent relative humidity", "%", "PERCENT_RH", "P1", "relative_humidity", "%RH"),
        _u("%EL", "percent of remaining battery energy", "%", "PERCENT", "P1", "battery_level", "%EL"),
        _u("count", "count", "1", "NUM", "C62", "count", "count"),
        _u("ppm", "parts per million", "ppm", "PPM", "59", "ratio", "/", 1e-6),
        _u("ppb", "parts per billion", "ppb", "PPB", "61", "ratio", "/", 1e-9),
        # mass concentration
        _u("kg/m3", "kilogram per cubic metre", "kg/m³", "KiloGM-PER-M3", "KMQ", "mass_concentration", "kg/m3"),
        _u("g/m3", "gram per cubic metre", "g/m³", "GM-PER-M3", "A93", "mass_concentration", "kg/m3", 1e-3),
        _u("mg/m3", "milligram per cubic metre", "mg/m³", "MilliGM-PER-M3", "GP", "mass_concentration",
           "kg/m3", 1e-6),
        _u("ug/m3", "microgram per cubic metre", "µg/m³", "MicroGM-PER-M3", "GQ", "mass_concentration",
           "kg/m3", 1e-9),
        # sound
        _u("dB", "decibel", "dB", "DeciB", "2N", "level", "dB"),
        # energy
        _u("J", "joule", "J", "J", "JOU", "energy", "J"),
        _u("Wh", "watt hour", "Wh", "W-HR", "WHR", "energy", "J", 3600.0),
        _u("kWh", "kilowatt hour", "kWh", "KiloW-HR", "KWH", "energy", "J", 3.6e6),
        # power
        _u("W", "watt", "W", "W", "WTT", "power", "W"),
        _u("kW", "kilowatt", "kW", "KiloW", "KWT", "power", "W", 1e3),
        _u("mW", "milliwatt", "mW", "MilliW", "C31", "power", "W", 1e-3),
        # speed
        _u("m/s", "metre per second", "m/s", "M-PER-SEC", "MTS", "speed", "m/s"),
        _u("km/h", "kilometre per hour", "km/h", "KiloM-PER-HR", "KMH", "speed", "m/s", 1.0 / 3.6),
        _u("mm/h", "millimetre per hour", "mm/h", "MilliM-PER-HR", "H67", "speed", "m/s", 1e-3 / 3600.0),
        # pressure
        _u("Pa", "pascal", "Pa", "PA", "PAL", "pressure", "Pa"),
        _u("hPa", "hectopascal", "hPa", "HectoPA", "A97", "pressure", "Pa", 100.0),
        _u("kPa", "kilopascal", "kPa", "KiloPA", "KPA", "pressure", "Pa", 1e3),
        # light
        _u("lx", "lux", "lx", "LUX", "LUX", "illuminance", "lx"),
        # electricity
        _u("V", "volt", "V", "V", "VLT", "voltage", "V"),
        _u("mV", "millivolt", "mV", "MilliV", "2Z", "voltage", "V", 1e-3),
        _u("A", "ampere", "A", "A", "AMP", "current", "A"),
        _u("mA", "milliampere", "mA", "MilliA", "4K", "current", "A", 1e-3),
        # length
        _u("m", "metre", "m", "M", "MTR", "length", "m"),
        _u("cm", "centimetre", "cm", "CentiM", "CMT", "length", "m", 1e-2),
        _u("mm", "millimetre", "mm", "MilliM", "MMT", "length", "m", 1e-3),
        _u("km", "kilometre", "km", "KiloM", "KMT", "length", "m", 1e3),
        # time
        _u("s", "second", "s", "SEC", "SEC", "time", "s"),
        _u("min", "minute", "min", "MIN", "MIN", "time", "s", 60.0),
        _u("h", "hour", "h", "HR", "HUR", "time", "s", 3600.0),
        _u("ms", "millisecond", "ms", "MilliSEC", "C26", "time", "s", 1e-3),
        # angle
        _u("rad", "radian", "rad", "RAD", "C81", "angle", "rad"),
        _u("deg", "degree", "°", "DEG", "DD", "angle", "rad", 0.017453292519943295),
        # position (RFC 8428: degrees latitude and longitude, WGS 84)
        _u("lat", "degree latitude", "°", "DEG", "DD", "latitude", "lat"),
        _u("lon", "degree longitude", "°", "DEG", "DD", "longitude", "lon"),
        # frequency
        _u("Hz", "hertz", "Hz", "HZ", "HTZ", "frequency", "Hz"),
        _u("kHz", "kilohertz", "kHz", "KiloHZ", "KHZ", "frequency", "Hz", 1e3),
        _u("MHz", "megahertz", "MHz", "MegaHZ", "MHZ", "frequency", "Hz", 1e6),
    ]
)


def unit(senml: str) -> Unit:
    """Return the :class:`Unit` of a SenML unit name; :class:`UnitError` when unknown."""
    try:
        return UNITS[senml]
    except KeyError:
        raise UnitError(f"unknown SenML unit {senml!r}") from None


def convertible(source: str, target: str) -> bool:
    """Whether values in ``source`` convert to ``target`` (same dimension)."""
    a, b = UNITS.get(source), UNITS.get(target)
    return a is not None and b is not None and a.dimension == b.dimension


def convert(value, source: str, target: str):
    """Convert ``value`` (a float or a numpy array) from ``source`` to ``target``.

    ``target = (value * s.scale + s.offset - t.offset) / t.scale``; an identity
    conversion returns ``value`` itself.
    """
    if source == target:
        return value
    s, t = unit(source), unit(target)
    if s.dimension != t.dimension:
        raise UnitError(f"cannot convert {source!r} ({s.dimension}) to {target!r} ({t.dimension})")
    return (value * s.scale + (s.offset - t.offset)) / t.scale
