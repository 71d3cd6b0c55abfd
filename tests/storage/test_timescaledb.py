"""Migrations, writer, compression, retention and queries on a real TimescaleDB engine."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest

from storage.db import capabilities
from storage.migrate import migrate
from storage.packs import PackKey, add_counters, advance_watermarks, claim_packs
from storage.partitions import list_chunks
from storage.registry import ensure_series, register_device
from storage.retention import RetentionPolicy
from storage.timeseries import TimeSeriesWriter

pytestmark = pytest.mark.slow

DAY_US = 86_400_000_000


class Partials:
    """Aggregate partials as the stream processor hands them over (one window width)."""

    def __init__(self, width_s: int, rows: list[tuple]) -> None:
        cols = list(zip(*rows))
        self.width_s = width_s
        self.series_id = np.array(cols[0], np.int32)
        self.bucket = np.array(cols[1], np.int64)
        self.count = np.array(cols[2], np.int64)
        self.sum, self.min, self.max, self.last = (np.array(c, np.float64) for c in cols[3:7])
        self.last_time = np.array(cols[7], np.int64)
        self.m2 = np.array(cols[8], np.float64)


@pytest.fixture(scope="module")
def conn(timescale_url: str):
    with psycopg.connect(timescale_url, autocommit=True) as connection:
        applied = migrate(connection, retention=RetentionPolicy(readings_days=30, compress_after_days=3))
        assert [m.version for m in applied][:1] == [1]
        yield connection


def test_migrations_make_hypertables_and_are_idempotent(conn: psycopg.Connection) -> None:
    caps = capabilities(conn)
    assert caps.engine == "timescaledb" and caps.timescaledb_version.startswith("2.23")
    assert not caps.copy_from_stdin
    hypertables = {r[0] for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
    assert hypertables == {"readings", "aggregates", "anomalies"}
    compression = dict(conn.execute(
        "SELECT hypertable_name, string_agg(attname, ',' ORDER BY attname) FROM"
        " timescaledb_information.compression_settings WHERE segmentby_column_index IS NOT NULL"
        " GROUP BY 1").fetchall())
    assert compression["readings"] == "series_id"
    jobs = conn.execute(
        "SELECT hypertable_name, proc_name, config->>'drop_after', config->>'compress_after'"
        " FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL ORDER BY 1, 2").fetchall()
    assert ("readings", "policy_retention", "30 days", None) in jobs
    assert ("readings", "policy_compression", None, "3 days") in jobs
    assert migrate(conn, retention=RetentionPolicy(readings_days=30, compress_after_days=3)) == []
    assert len(conn.execute("SELECT * FROM timescaledb_information.jobs WHERE hypertable_name = 'readings'"
                            ).fetchall()) == 2


@pytest.fixture(scope="module")
def hourly(conn: psycopg.Connection) -> tuple[int, np.ndarray]:
    """50 days of hourly readings of one series, with their aggregates and two anomalies:
    (series id, times in UTC microseconds). Every test that reads them asks for this."""
    register_device(conn, org="lab", device="air-1")
    ids = ensure_series(conn, [("lab", "air-1", "temperature", "Cel")])
    sid = ids[("lab", "air-1", "temperature")]
    writer = TimeSeriesWriter(capabilities(conn))
    now_us = int(datetime.now(timezone.utc).timestamp() * 1e6)
    # some chunks past compression, some past retention
    time_us = now_us - np.arange(50 * 24, dtype=np.int64)[::-1] * 3_600_000_000
    value = np.sin(np.arange(len(time_us)) / 10.0)
    series = np.full(len(time_us), sid, np.int32)
    with conn.transaction():
        claimed = claim_packs(conn, [PackKey("lab", "air-1", "b", 0, len(time_us))])
        assert claimed.tolist() == [True]
        assert writer.write_readings(conn, series, time_us, value) == len(time_us)
        buckets = (time_us // 3_600_000_000) * 3_600_000_000
        writer.merge_aggregates(conn, [Partials(3600, [
            (sid, b, 1, v, v, v, v, t, 0.0) for b, v, t in zip(buckets.tolist(), value.tolist(), time_us.tolist())])])
        writer.insert_anomalies(conn, series[:2], time_us[:2], value[:2], np.array([0.95, 0.99]), ["spike", "stuck"])
        advance_watermarks(conn, [("lab", "air-1", "b")])
        add_counters(conn, {"packs_stored": 1, "readings_stored": len(time_us)})
    return sid, time_us


def test_writer_compression_retention_and_queries(conn: psycopg.Connection, hourly) -> None:
    sid, time_us = hourly
    writer = TimeSeriesWriter(capabilities(conn))
    now_us = int(time_us[-1])
    buckets = (time_us // 3_600_000_000) * 3_600_000_000
    assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == len(time_us)
    # a second partial for the same windows merges (count adds up)
    writer.merge_aggregates(conn, [Partials(3600, [(sid, int(buckets[-1]), 1, 1.0, 1.0, 1.0, 1.0,
                                                     int(time_us[-1]) + 1, 0.0)])])
    assert conn.execute("SELECT count FROM aggregates ORDER BY bucket DESC LIMIT 1").fetchone()[0] == 2

    # time_bucket over the stored data
    rows = conn.execute(
        "SELECT time_bucket('1 day', time, origin => timestamptz 'epoch') AS day, count(*) FROM readings"
        " WHERE series_id = %s GROUP BY day ORDER BY day", (sid,)).fetchall()
    assert sum(r[1] for r in rows) == len(time_us)

    # compression: run the policy's job now, as TimescaleDB's scheduler would
    job = conn.execute("SELECT job_id FROM timescaledb_information.jobs WHERE hypertable_name = 'readings'"
                       " AND proc_name = 'policy_compression'").fetchone()[0]
    conn.execute("CALL run_job(%s)", (job,))
    chunks = [c for c in list_chunks(conn) if c.table == "readings"]
    old = [c for c in chunks if c.end < datetime.now(timezone.utc) - timedelta(days=4)]
    assert old and all(c.compressed for c in old)
    # compressed data still reads back, and a late reading can still land in a compressed chunk
    assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == len(time_us)
    late = now_us - 40 * DAY_US + 123
    writer.write_readings(conn, np.array([sid], np.int32), np.array([late], np.int64), np.array([42.0]))
    assert conn.execute("SELECT count(*) FROM readings WHERE value = 42").fetchone()[0] == 1

    # retention: run the policy's job; readings older than 30 days are gone
    job = conn.execute("SELECT job_id FROM timescaledb_information.jobs WHERE hypertable_name = 'readings'"
                       " AND proc_name = 'policy_retention'").fetchone()[0]
    conn.execute("CALL run_job(%s)", (job,))
    oldest = conn.execute("SELECT min(time) FROM readings").fetchone()[0]
    assert oldest > datetime.now(timezone.utc) - timedelta(days=32)
    assert conn.execute("SELECT count(*) FROM anomalies").fetchone()[0] == 2


def test_the_api_queries_run_on_timescaledb(conn: psycopg.Connection, hourly) -> None:
    from storage import queries

    sid, _ = hourly
    now = datetime.now(timezone.utc)
    start, end = now - timedelta(days=10), now + timedelta(hours=1)
    readings = queries.read_readings(conn, sid, start, end, limit=100_000)
    assert len(readings) == 10 * 24 and readings == sorted(readings, key=lambda r: r.time)
    page = queries.read_readings(conn, sid, start, end, limit=10, skip=5)
    assert page == readings[5:15]
    days = queries.read_aggregates(conn, sid, start, end, bucket_s=86_400, width_s=3600)
    assert {d.bucket.timestamp() % 86_400 for d in days} == {0.0}  # time_bucket, aligned to the epoch
    stored = conn.execute("SELECT sum(count) FROM aggregates WHERE width_s = 3600 AND bucket >= %s AND bucket < %s",
                          (start, end)).fetchone()[0]
    assert sum(d.count for d in days) == stored
    latest = queries.latest_values(conn, [sid])
    assert latest[0].time == readings[-1].time
    assert queries.lab_status(conn).devices == 1
    anomalies = queries.read_anomalies(conn, now - timedelta(days=60), end, limit=10)
    assert sorted(a.kind for a in anomalies) == ["spike", "stuck"]


def test_a_restarted_worker_reads_the_newest_readings_back(conn: psycopg.Connection, hourly) -> None:
    from storage.preceding import latest_readings

    sid, time_us = hourly
    ids, times, values = latest_readings(conn, np.array([sid, sid + 999], np.int32), depth=5)
    stored = conn.execute("SELECT (extract(epoch FROM time) * 1000000)::bigint FROM readings WHERE series_id = %s"
                          " ORDER BY time DESC LIMIT 5", (sid,)).fetchall()
    assert ids.tolist() == [sid] * 5 and times.tolist() == sorted(r[0] for r in stored)
    assert times[-1] == time_us[-1] and values.dtype == np.float64
