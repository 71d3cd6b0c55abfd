"""A product's quality report counts a series created inside the current hour window."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import psycopg

from storage.db import capabilities
from storage.products import create_product, product_quality
from storage.registry import ensure_series, register_device
from storage.tenants import create_org
from storage.timeseries import TimeSeriesWriter


class _Hourly:
    def __init__(self, sid: int, t_us: int, value: float) -> None:
        self.width_s = 3600
        self.series_id = np.array([sid], np.int32)
        self.bucket = np.array([t_us - t_us % 3_600_000_000], np.int64)
        self.count = np.array([1], np.int64)
        self.sum = self.min = self.max = self.last = np.array([value])
        self.last_time = np.array([t_us], np.int64)
        self.m2 = np.array([0.0])


def test_a_series_created_this_hour_is_counted(database: str) -> None:
    now = datetime.now(timezone.utc)
    t_us = int(now.timestamp() * 1e6)
    with psycopg.connect(database, autocommit=True) as conn:
        org = create_org(conn, name="Fresh Sensors", kind="provider")
        register_device(conn, org=org.slug, device="fresh-1")
        sid = ensure_series(conn, [(org.slug, "fresh-1", "pm2_5", "ug/m3")])[(org.slug, "fresh-1", "pm2_5")]
        writer = TimeSeriesWriter(capabilities(conn))
        writer.write_readings(conn, np.array([sid], np.int32), np.array([t_us], np.int64), np.array([12.5]))
        writer.merge_aggregates(conn, [_Hourly(sid, t_us, 12.5)])
        product = create_product(conn, org_id=org.id, org_slug=org.slug, title="Fresh", description="",
                                 licence="CC-BY-4.0", terms="", price_month=None, currency="NOK",
                                 series_ids=[sid])
        window = product_quality(conn, product.id, days=7, width_s=3600, now=now)
    assert window.readings == 1
    assert window.uptime and window.uptime > 0
