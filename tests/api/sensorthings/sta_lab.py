"""The SensorThings tests' lab: two providers and a city, with known rows.

Organisation `lab` (provider): air-1 at (5.7331 E, 58.9690 N) with pm2_5 (a
reading every minute for two hours from T0, value = minute / 2), no2 (three
readings) and temperature (ten readings); noise-2 at (5.70 E, 58.95 N) with
noise; gw-3 without a location, with battery. Organisation `other`
(provider): other-1 at (10.75 E, 59.91 N) with pm10, sold to `lab` in an
active data product, and other-2 with co2, not sold. Organisation `city`
sees nothing of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from fastapi.testclient import TestClient
from testbed import Tenant, make_tenant

from api import create_app
from citylab.settings import Settings
from storage.products import create_product, decide_grant, request_access

ROOT = "/sta/v1.1"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PM25_READINGS = 120

DEVICES = {  # device: (org, lat, lon, [(quantity, unit)])
    "air-1": ("lab", 58.9690, 5.7331, [("pm2_5", "ug/m3"), ("no2", "ug/m3"), ("temperature", "Cel")]),
    "noise-2": ("lab", 58.95, 5.70, [("noise", "dB")]),
    "gw-3": ("lab", None, None, [("battery", "%EL")]),
    "other-1": ("other", 59.91, 10.75, [("pm10", "ug/m3")]),
    "other-2": ("other", 59.92, 10.76, [("co2", "ppm")]),
}


@dataclass(frozen=True)
class StaLab:
    url: str
    lab: Tenant
    other: Tenant
    city: Tenant
    series: dict[str, int]     # "device/quantity" -> series id
    things: dict[str, int]     # device -> thing id
    grant: int


def seed_sta(url: str) -> StaLab:
    lab = make_tenant(url, name="Lab", kind="provider", slug="lab")
    other = make_tenant(url, name="Other", kind="provider", slug="other")
    city = make_tenant(url, name="City", kind="city", slug="city")
    series: dict[str, int] = {}
    things: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for device, (org, lat, lon, sensors) in DEVICES.items():
            things[device] = conn.execute(
                "INSERT INTO devices (device, org, lat, lon) VALUES (%s, %s, %s, %s) RETURNING thing_id",
                (device, org, lat, lon)).fetchone()[0]
            for quantity, unit in sensors:
                series[f"{device}/{quantity}"] = conn.execute(
                    "INSERT INTO series (org, device, quantity, unit, interval_s) VALUES (%s, %s, %s, %s, 60)"
                    " RETURNING id", (org, device, quantity, unit)).fetchone()[0]
        rows = [(T0 + timedelta(minutes=i), series["air-1/pm2_5"], i / 2) for i in range(PM25_READINGS)]
        rows += [(T0 + timedelta(minutes=10 * i), series["air-1/no2"], 20.0 + i) for i in range(3)]
        rows += [(T0 + timedelta(minutes=i), series["air-1/temperature"], -2.0 + i) for i in range(10)]
        rows += [(T0 + timedelta(minutes=i), series["noise-2/noise"], 50.0 + i) for i in range(5)]
        rows += [(T0 + timedelta(minutes=i), series["gw-3/battery"], 90.0) for i in range(2)]
        rows += [(T0 + timedelta(minutes=i), series["other-1/pm10"], 30.0 + i) for i in range(4)]
        rows += [(T0 + timedelta(minutes=i), series["other-2/co2"], 400.0 + i) for i in range(2)]
        with conn.cursor().copy("COPY readings (time, series_id, value) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        product = create_product(conn, org_id=other.org_id, org_slug="other", title="Oslo PM10", description="",
                                 licence="CC-BY-4.0", terms="", price_month=Decimal("10"), currency="NOK",
                                 series_ids=[series["other-1/pm10"]])
        grant = request_access(conn, product_id=product.id, consumer_org=lab.org_id, message="please")
        decide_grant(conn, grant_id=grant.id, provider_org=other.org_id, approve=True, expires_at=None)
    return StaLab(url, lab, other, city, series, things, grant.id)


@contextmanager
def client_of(lab: StaLab, headers: dict[str, str]) -> Iterator[TestClient]:
    """A TestClient of the app over the lab's database, sending `headers`."""
    with TestClient(create_app(Settings(database_url=lab.url, public_base_url="http://testserver")), headers=headers) as client:
        yield client
