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

__all__ = [
    "AIR_QUALITY_CLASSES",
    "LABELS_NB",
    "QUANTITIES",
    "THEMES",
    "THEME_SCHEME",
    "AirQualityClass",
    "DataTheme",
    "Quantity",
    "SmartDataModel",
    "quantity",
]


THEME_SCHEME = "http://publications.europa.eu/resource/authority/data-theme"
_THEME = THEME_SCHEME + "/"


@dataclass(frozen=True, slots=True)
class DataTheme:
    """A concept of the EU data-theme vocabulary (DCAT-AP ``dcat:theme``) with its
    labels in English and Norwegian Bokmål, as the Publications Office gives them."""

    code: str
    label_en: str
    label_nb: str

    @property
    def uri(self) -> str:
        return _THEME + self.code


THEMES: dict[str, DataTheme] = {
    theme.code: theme for theme in (
        DataTheme("ENVI", "Environment", "Miljø"),
        DataTheme("ENER", "Energy", "Energi"),
        DataTheme("TRAN", "Transport", "Transport"),
        DataTheme("TECH", "Science and technology", "Vitenskap og teknologi"),
    )
}
_SDM = "https://smartdatamodels.org/"


@dataclass(frozen=True, slots=True)
class SmartDataModel:
    """Where a quantity sits in the Smart Data Models: ``model.attribute``.

    ``scale`` converts a reading in the quantity's unit to the model's unit
    (relative humidity is a fraction 0..1 there, a percentage here); ``unit``
    is the SenML unit of the model's attribute when it differs from the
    quantity's (its UN/CEFACT code is the NGSI-LD ``unitCode``), None when the
    model takes the quantity's own unit.
    """

    model: str
    attribute: str
    domain: str
    scale: float = 1.0
    unit: str | None = None

    @property
    def definition(self) -> str:
        return f"{_SDM}dataModel.{self.domain}/{self.attribute}"


@dataclass(frozen=True, slots=True)
class Quantity:
    """One measurable quantity: its name in series ids, SenML unit and bounds.

    Besides the SenML unit and the physical bounds, a quantity carries what the
    standard faces say of it: ``label`` and ``definition`` (the SensorThings
    ObservedProperty), ``sdm`` (the Smart Data Models attribute, NGSI-LD), and
    ``theme`` (the EU data theme, DCAT-AP). The unit's own vocabulary
    (name, symbol, definition, UN/CEFACT code) is in :mod:`protocol.units`.
    """

    name: str
    unit: str
    low: float
    high: float
    description: str
    label: str = ""
    definition: str = ""
    sdm: SmartDataModel | None = None
    theme: str = "ENVI"

    @property
    def theme_uri(self) -> str:
        return _THEME + self.theme


def _q(
    name: str, unit: str, low: float, high: float, description: str, *,
    label: str, definition: str, sdm: SmartDataModel | None, theme: str = "ENVI",
) -> tuple[str, Quantity]:
    return name, Quantity(name, unit, low, high, description, label, definition, sdm, theme)


_QK = "http://qudt.org/vocab/quantitykind/"
_AIR = "AirQualityObserved"
_ENV = "Environment"


def _air(attribute: str, scale: float = 1.0, unit: str | None = None) -> SmartDataModel:
    return SmartDataModel(_AIR, attribute, _ENV, scale, unit)


QUANTITIES: dict[str, Quantity] = dict(
    [
        _q("temperature", "Cel", -50.0, 60.0, "air temperature, degrees Celsius",
           label="Air temperature", definition=_QK + "Temperature", sdm=_air("temperature")),
        _q("humidity", "%RH", 0.0, 100.0, "relative humidity",
           label="Relative humidity", definition=_QK + "RelativeHumidity",
           sdm=_air("relativeHumidity", 0.01, "/")),
        _q("pm2_5", "ug/m3", 0.0, 1000.0, "particulate matter < 2.5 um, mass concentration",
           label="PM2.5", definition=_SDM + "dataModel.Environment/pm25", sdm=_air("pm25")),
        _q("pm10", "ug/m3", 0.0, 2000.0, "particulate matter < 10 um, mass concentration",
           label="PM10", definition=_SDM + "dataModel.Environment/pm10", sdm=_air("pm10")),
        _q("no2", "ug/m3", 0.0, 2000.0, "nitrogen dioxide, mass concentration",
           label="Nitrogen dioxide", definition=_SDM + "dataModel.Environment/no2", sdm=_air("no2")),
        _q(
            "noise",
            "dB",
            0.0,
            150.0,
            "A-weighted equivalent sound level LAeq, dB(A); SenML has no dB(A) unit, "
            "so the unit is dB and the A-weighting is part of the quantity",
            label="Noise level LAeq", definition=_SDM + "dataModel.Environment/LAeq",
            sdm=SmartDataModel("NoiseLevelObserved", "LAeq", _ENV),
        ),
        _q("energy", "kWh", 0.0, 1e9, "active energy, monotonic meter counter (never decreases)",
           label="Active energy imported", definition=_QK + "Energy",
           sdm=SmartDataModel("ACMeasurement", "totalActiveEnergyImport", "Energy"), theme="ENER"),
        _q("power", "W", 0.0, 1e7, "active power",
           label="Active power", definition=_QK + "ActivePower",
           sdm=SmartDataModel("ACMeasurement", "totalActivePower", "Energy"), theme="ENER"),
        _q(
            "traffic_count",
            "count",
            0.0,
            1e6,
            "vehicles or people counted during the reporting interval "
            "(SenML unit 'count', RFC 8428: counter of occurrences)",
            label="Traffic count", definition=_SDM + "dataModel.Transportation/intensity",
            sdm=SmartDataModel("TrafficFlowObserved", "intensity", "Transportation"), theme="TRAN",
        ),
        _q("speed", "km/h", 0.0, 300.0, "vehicle speed",
           label="Average vehicle speed", definition=_SDM + "dataModel.Transportation/averageVehicleSpeed",
           sdm=SmartDataModel("TrafficFlowObserved", "averageVehicleSpeed", "Transportation"), theme="TRAN"),
        _q("pressure", "hPa", 300.0, 1100.0, "barometric pressure",
           label="Atmospheric pressure", definition=_QK + "Pressure",
           sdm=SmartDataModel("WeatherObserved", "atmosphericPressure", "Weather")),
        _q("illuminance", "lx", 0.0, 200_000.0, "illuminance (full sunlight is ~100 klx)",
           label="Illuminance", definition=_QK + "Illuminance",
           sdm=SmartDataModel("WeatherObserved", "illuminance", "Weather")),
        _q("battery", "%EL", 0.0, 100.0, "remaining battery energy, percent (SenML %EL)",
           label="Battery level", definition=_SDM + "dataModel.Device/batteryLevel", sdm=None, theme="TECH"),
        _q("battery_voltage", "V", 0.0, 60.0, "battery voltage",
           label="Battery voltage", definition=_QK + "Voltage", sdm=None, theme="TECH"),
        _q("co2", "ppm", 0.0, 40_000.0, "carbon dioxide, volume fraction",
           label="Carbon dioxide", definition=_SDM + "dataModel.Environment/co2", sdm=_air("co2")),
        _q("wind_speed", "m/s", 0.0, 100.0, "wind speed",
           label="Wind speed", definition=_QK + "Speed",
           sdm=SmartDataModel("WeatherObserved", "windSpeed", "Weather")),
    ]
)


# The quantities' labels in Norwegian Bokmål (the English ones are `Quantity.label`).
LABELS_NB: dict[str, str] = {
    "temperature": "Lufttemperatur", "humidity": "Relativ luftfuktighet", "pm2_5": "PM2,5 (svevestøv)",
    "pm10": "PM10 (svevestøv)", "no2": "Nitrogendioksid (NO₂)", "noise": "Støynivå LAeq",
    "energy": "Aktiv energi", "power": "Aktiv effekt", "traffic_count": "Trafikktelling",
    "speed": "Gjennomsnittsfart", "pressure": "Lufttrykk", "illuminance": "Belysningsstyrke",
    "battery": "Batterinivå", "battery_voltage": "Batterispenning", "co2": "Karbondioksid (CO₂)",
    "wind_speed": "Vindhastighet",
}


@dataclass(frozen=True, slots=True)
class AirQualityClass:
    """One class of the Norwegian air-quality index (Miljødirektoratet's classes for
    hourly means, as luftkvalitet.info shows them): values from `low` (inclusive)
    below `high` (None: no upper end), in the quantity's unit."""

    low: float
    high: float | None
    colour: str          # as on luftkvalitet.info: green, yellow, red, purple
    label_nb: str
    label_en: str
    advice_en: str


def _classes(moderate: float, high: float, very_high: float) -> tuple[AirQualityClass, ...]:
    return (
        AirQualityClass(0.0, moderate, "#6ee86e", "Lite", "Low", "Little or no health risk."),
        AirQualityClass(moderate, high, "#ffff64", "Moderat", "Moderate",
                        "People with respiratory or heart disease may notice symptoms."),
        AirQualityClass(high, very_high, "#ff4646", "Høy", "High",
                        "Sensitive groups should avoid long stays outdoors in polluted areas."),
        AirQualityClass(very_high, None, "#a064e6", "Svært høy", "Very high",
                        "Everyone may feel effects; sensitive groups should stay indoors."),
    )


# Quantities with such classes (µg/m³, hourly means).
AIR_QUALITY_CLASSES: dict[str, tuple[AirQualityClass, ...]] = {
    "pm2_5": _classes(30.0, 50.0, 150.0),
    "pm10": _classes(60.0, 120.0, 400.0),
    "no2": _classes(100.0, 200.0, 400.0),
}


def quantity(name: str) -> Quantity:
    """Return the :class:`Quantity` called ``name``.

    Raises ``KeyError`` naming the known quantities when ``name`` is unknown.
    """
    try:
        return QUANTITIES[name]
    except KeyError:
        known = ", ".join(sorted(QUANTITIES))
        raise KeyError(f"unknown quantity {name!r}; known quantities: {known}") from None
