"""Erasure and per-series retention (storage.gdpr) on a real TimescaleDB engine, compressed chunks too."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest

from storage.db import capabilities
from storage.gdpr import apply_series_retention, classify_series, erase, erased_ranges, erased_readings
from storage.migrate import migrate
from storage.registry import ensure_series, register_device
from storage.timeseries import TimeSeriesWriter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def conn(timescale_url: str):
    with psycopg.connect(timescale_url, autocommit=True) as connection:
        migrate(connection)
        yield connection


def test_erase_and_retention_on_hypertables(conn: psycopg.Connection) -> None:
    assert capabilities(conn).engine == "timescaledb"
    register_device(conn, org="lab", device="wifi-1")
    sid = ensure_series(conn, [("lab", "wifi-1", "traffic_count", "count")])[("lab", "wifi-1", "traffic_count")]
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    now_us = int(now.timestamp() * 1e6)
    # 20 days of a reading every 10 minutes; the old chunks compressed
    time_us = now_us - np.arange(20 * 144, dtype=np.int64)[::-1] * 600_000_000
    writer = TimeSeriesWriter(capabilities(conn))
    with conn.transaction():
        writer.write_readings(conn, np.full(len(time_us), sid, np.int32), time_us, np.ones(len(time_us)))
        conn.execute(
            "INSERT INTO aggregates (width_s, series_id, bucket, count, sum, min, max, last, last_time, m2)"
            " SELECT 3600, series_id, date_trunc('hour', time), count(*), sum(value), min(value), max(value), 1,"
            " max(time), 0 FROM readings GROUP BY 2, 3")
    conn.execute("SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('readings',"
                 " older_than => interval '8 days') c")

    # an erasure reaching into a compressed chunk, not aligned to the hour
    start, end = now - timedelta(days=10, minutes=25), now - timedelta(days=9)
    receipt = erase(conn, org="lab", device="wifi-1", start=start, end=end, actor="cli")
    assert receipt is not None
    expected = int(((time_us >= start.timestamp() * 1e6) & (time_us < end.timestamp() * 1e6)).sum())
    assert receipt.deleted["readings"] == expected == 146
    assert receipt.reaggregated == 1          # the hour the range starts inside of keeps 4 readings (:00-:30)
    left = conn.execute("SELECT count FROM aggregates WHERE series_id = %s AND bucket = %s",
                        (sid, start.replace(minute=0))).fetchone()
    assert left == (4,)
    assert conn.execute("SELECT count(*) FROM readings WHERE series_id = %s AND time >= %s AND time < %s",
                        (sid, start, end)).fetchone() == (0,)
    ranges = erased_ranges(conn)
    probe = np.array([int(start.timestamp() * 1e6), int(end.timestamp() * 1e6)], np.int64)
    assert erased_readings(ranges, np.array([sid, sid], np.int32), probe).tolist() == [True, False]

    # retention of 7 days for this series: deletes the older rows, compressed or not
    classify_series(conn, org="lab", series_id=sid, personal_data="personal", legal_basis=None, purpose=None,
                    controller=None, retention_days=7)
    runs = apply_series_retention(conn, now=now)
    assert len(runs) == 1 and runs[0].days == 7
    horizon = now - timedelta(days=7)
    assert runs[0].deleted["readings"] == int((time_us < horizon.timestamp() * 1e6).sum()) - 146
    assert conn.execute("SELECT count(*) FROM readings WHERE series_id = %s AND time < %s",
                        (sid, horizon)).fetchone() == (0,)
    assert conn.execute("SELECT min(bucket) FROM aggregates WHERE series_id = %s", (sid,)).fetchone()[0] >= horizon
    assert apply_series_retention(conn, now=now) == []
