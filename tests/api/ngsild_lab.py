"""The seeded lab of the NGSI-LD tests: one device per Smart Data Model in the
organisation `lab`, located in Stavanger, with known latest readings, and a
device of another organisation (`other`) that `lab` may not read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from testbed import Tenant, make_tenant

from api import create_app
from citylab.settings import Settings

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SDM = Path(__file__).resolve().parents[3] / "shared" / "data" / "smart-data-models"
DOMAIN = {"AirQualityObserved": "Environment", "NoiseLevelObserved": "Environment", "WeatherObserved": "Weather",
          "TrafficFlowObserved": "Transportation", "ACMeasurement": "Energy"}
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
CTX_REL = 'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def context_url(domain: str) -> str:
    """The published @context of a Smart Data Models domain (served from local copies)."""
    return f"https://raw.githubusercontent.com/smart-data-models/dataModel.{domain}/master/context.jsonld"


def link(domain: str) -> dict[str, str]:
    return {"Link": f"<{context_url(domain)}>; {CTX_REL}"}

# device -> (lat, lon, [(quantity, unit, [values at T0, T0 + 1 min, ...])])
DEVICES = {
    "air-1": (58.9690, 5.7331, [("pm2_5", "ug/m3", [10.0, 12.5, 14.0]), ("no2", "ug/m3", [20.0, 22.0, 21.0]),
                                ("humidity", "%RH", [50.0, 55.0, 60.0]), ("temperature", "K", [280.15, 281.15, 282.15])]),
    "air-2": (58.9100, 5.7400, [("pm2_5", "ug/m3", [30.0, 35.0, 40.0])]),
    "noise-1": (58.9700, 5.7300, [("noise", "dB", [55.0, 61.5, 58.0])]),
    "meter-1": (58.9500, 5.7000, [("energy", "kWh", [100.0, 100.5, 101.0]), ("power", "W", [1500.0, 1400.0, 1450.0])]),
    "traffic-1": (58.9600, 5.7200, [("traffic_count", "count", [12.0, 15.0, 9.0]), ("speed", "km/h", [42.0, 38.0, 45.0])]),
    "weather-1": (58.9650, 5.7250, [("pressure", "hPa", [1013.0, 1012.5, 1012.0]), ("wind_speed", "m/s", [3.0, 4.5, 5.0])]),
}
OTHER = {"air-9": (59.9100, 10.7500, [("pm2_5", "ug/m3", [5.0, 6.0, 7.0])])}


@dataclass(frozen=True)
class NgsiLab:
    url: str
    series: dict[tuple[str, str], int]   # (device, quantity) -> series id


def seed(url: str) -> NgsiLab:
    series: dict[tuple[str, str], int] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for org, devices in (("lab", DEVICES), ("other", OTHER)):
            for device, (lat, lon, quantities) in devices.items():
                conn.execute("INSERT INTO devices (device, org, lat, lon) VALUES (%s, %s, %s, %s)",
                             (device, org, lat, lon))
                for quantity, unit, values in quantities:
                    sid = conn.execute(
                        "INSERT INTO series (org, device, quantity, unit, interval_s) VALUES (%s, %s, %s, %s, 60)"
                        " RETURNING id", (org, device, quantity, unit)).fetchone()[0]
                    series[(device, quantity)] = sid
                    conn.cursor().executemany(
                        "INSERT INTO readings (time, series_id, value) VALUES (%s, %s, %s)",
                        [(T0 + timedelta(minutes=i), sid, v) for i, v in enumerate(values)])
    return NgsiLab(url, series)


def _registry() -> Registry:
    files = {
        "https://smart-data-models.github.io/data-models/common-schema.json": SDM / "common-schema.json",
        "https://smart-data-models.github.io/dataModel.Environment/Environment-schema.json":
            SDM / "Environment" / "Environment-schema.json",
        "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/Environment-schema.json":
            SDM / "Environment" / "Environment-schema.json",
        "https://smart-data-models.github.io/dataModel.Weather/weather-schema.json":
            SDM / "Weather" / "weather-schema.json",
    }
    return Registry().with_resources(
        (url, Resource.from_contents(json.loads(path.read_text()))) for url, path in files.items())


REGISTRY = _registry()


def validator(model: str) -> Draft202012Validator:
    schema = json.loads((SDM / DOMAIN[model] / model / "schema.json").read_text())
    return Draft202012Validator(schema, registry=REGISTRY, format_checker=FormatChecker())


# The fixtures of a lab seeded for the NGSI-LD face, its provider and a client allowed loopback
# notification endpoints and @context URLs.

@pytest.fixture
def ngsi_lab(database: str) -> NgsiLab:
    return seed(database)


@pytest.fixture
def tenant(ngsi_lab: NgsiLab) -> Tenant:
    return make_tenant(ngsi_lab.url, name="Lab", kind="provider", slug="lab")


@pytest.fixture
def client(ngsi_lab: NgsiLab, tenant: Tenant) -> Iterator[TestClient]:
    settings = Settings(database_url=ngsi_lab.url, outbound_allow_loopback=True)
    with TestClient(create_app(settings), headers=tenant.headers) as client:
        yield client
