"""A marketplace lab for the catalogue tests: the city, two provider SMEs and a
research organisation; four products (open and listed, priced and listed, listed
without location data, and one neither listed nor open), readings for a day and the
60 s aggregates computed from them in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from testbed import Tenant

from storage.catalog import set_org_profile
from storage.products import create_product
from storage.tenants import SensorSpec, create_key, create_org, device_series, onboard_device

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)


@dataclass(frozen=True)
class Market:
    url: str
    city: Tenant
    air: Tenant             # provider SME: air quality
    energy: Tenant          # provider SME: energy
    research: Tenant
    open_product: int       # air quality, NLOD, free, open and listed
    priced_product: int     # energy, priced, listed
    noise_product: int      # the air SME's noise, listed, not open, no locations
    hidden_product: int     # neither listed nor open
    open_series: list[int]
    closed_series: list[int]


def _tenant(conn: psycopg.Connection, name: str, kind: str, slug: str, org_number: str | None,
            email: str | None) -> Tenant:
    org = create_org(conn, name=name, kind=kind, slug=slug)
    set_org_profile(conn, org_id=org.id, org_number=org_number, contact_email=email, homepage=None)
    _, key = create_key(conn, org_id=org.id, role="admin")
    return Tenant(org.id, org.slug, key)


def _device(conn, org: str, device: str, lat: float | None, lon: float | None,
            sensors: list[tuple[str, str, float]]) -> list[int]:
    onboard_device(conn, org=org, device=device, gateway=None, kind="sensor", lat=lat, lon=lon, dev_eui=None,
                   lora_channels=None,
                   sensors=[SensorSpec(q, u, i, None, None) for q, u, i in sensors])
    return [sid for sid, _, _ in device_series(conn, org=org, device=device)]


def _start(hours: int) -> datetime:
    """Readings end now, whenever the lab is seeded (T0 is fixed when the module is imported)."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours)


def _readings(conn, series_id: int, step_s: int, hours: int) -> None:
    conn.execute(
        "INSERT INTO readings (time, series_id, value) SELECT %s + g * make_interval(secs => %s), %s,"
        " 10 + 5 * sin(g / 30.0) FROM generate_series(0, %s - 1) g",
        (_start(hours), step_s, series_id, hours * 3600 // step_s),
    )
    conn.execute(
        "INSERT INTO aggregates (width_s, series_id, bucket, count, sum, min, max, last, last_time, m2)"
        " SELECT 60, series_id, date_bin('60 seconds', time, 'epoch'), count(*), sum(value), min(value),"
        " max(value), (array_agg(value ORDER BY time DESC))[1], max(time),"
        " coalesce(var_pop(value) * count(*), 0) FROM readings WHERE series_id = %s GROUP BY 1, 2, 3",
        (series_id,),
    )


def seed_market(url: str, *, prefix: str = "") -> Market:
    """The marketplace; `prefix` keeps slugs and device names apart when two labs share a server."""
    with psycopg.connect(url, autocommit=True) as conn:
        city = _tenant(conn, "Stavanger kommune", "city", f"{prefix}stavanger", "964965226", "data@stavanger.kommune.no")
        air = _tenant(conn, "Luftkvalitet AS", "provider", f"{prefix}luft", "912345678", "post@luft.example")
        energy = _tenant(conn, "Energimåling AS", "provider", f"{prefix}energi", None, None)
        research = _tenant(conn, "NORCE", "research", f"{prefix}norce", "985321796", None)
        air1 = _device(conn, air.slug, f"{prefix}air-1", 58.9700, 5.7331,
                       [("pm2_5", "ug/m3", 60), ("pm10", "ug/m3", 60), ("no2", "ug/m3", 60)])
        air2 = _device(conn, air.slug, f"{prefix}air-2", 58.9633, 5.7189, [("pm2_5", "ug/m3", 60)])
        noise = _device(conn, air.slug, f"{prefix}noise-1", None, None, [("noise", "dB", 1)])
        meter = _device(conn, energy.slug, f"{prefix}meter-1", 58.9690, 5.7400,
                        [("energy", "kWh", 900), ("power", "W", 900)])
        for sid in air1 + air2:
            _readings(conn, sid, 60, 6)
        for sid in meter:
            _readings(conn, sid, 900, 6)
        _readings(conn, noise[0], 10, 1)
        conn.execute("UPDATE series SET created_at = %s", (_start(6),))   # onboarded when the readings began
        common = dict(terms="", currency="NOK")
        open_product = create_product(
            conn, org_id=air.org_id, org_slug=air.slug, title="Air quality in central Stavanger",
            description="PM2.5, PM10 and NO2 every minute from two street-level sensors.",
            title_nb="Luftkvalitet i Stavanger sentrum",
            description_nb="PM2,5, PM10 og NO2 hvert minutt fra to sensorer i gatenivå.",
            licence="NLOD-2.0", price_month=None, series_ids=air1 + air2, listed=True, open=True,
            keywords=["air quality", "luftkvalitet"], **common)
        priced = create_product(
            conn, org_id=energy.org_id, org_slug=energy.slug, title="Energy use of a school",
            description="Active energy and power every 15 minutes.", licence="proprietary",
            price_month=Decimal("990.00"), series_ids=meter, listed=True, **common)
        noise_product = create_product(
            conn, org_id=air.org_id, org_slug=air.slug, title="Street noise", description="LAeq every second.",
            licence="CC-BY-4.0", price_month=Decimal("100.00"), series_ids=noise, listed=True, **common)
        hidden = create_product(
            conn, org_id=energy.org_id, org_slug=energy.slug, title="Internal test product", description="",
            licence="CC0-1.0", price_month=None, series_ids=meter[:1], **common)
    return Market(url, city, air, energy, research, open_product.id, priced.id, noise_product.id, hidden.id,
                  air1 + air2, meter + noise)
